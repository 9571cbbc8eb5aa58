"""Websocket consumers of run events: read-only views of the Channels groups the broadcast feeds.

`/ws/runs/<id>/` forwards every event of one run, `/ws/runs/` the run-level and approval events of all
runs, `/ws/approvals/` a data-free "approvals changed" hint. Each frame is a JSON list (a batch). The
user must be signed in (4401) and, for runs, hold `executions.view_run` (4403); an unknown run is 4404.
The consumer accepts and then closes with the code, so a browser can tell "refused" from "network
down" and stop reconnecting. Nothing sent by the client
is read: people act through REST and the admin.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from executions.broadcast import ALL_RUNS_GROUP, APPROVALS_GROUP, run_group
from executions.models import Run

NOT_SIGNED_IN, FORBIDDEN, NOT_FOUND = 4401, 4403, 4404
VIEW_RUN = "executions.view_run"


@database_sync_to_async
def _refusal(user, run_id: str | None, permission: str | None = VIEW_RUN) -> int | None:
    if user is None or not user.is_authenticated or not user.is_active:
        return NOT_SIGNED_IN
    if permission and not user.has_perm(permission):
        return FORBIDDEN
    if run_id is not None:
        if not Run.objects.filter(pk=run_id).exists():
            return NOT_FOUND
    return None


class _EventsConsumer(AsyncJsonWebsocketConsumer):
    group: str = ""
    permission: str | None = VIEW_RUN

    def group_name(self, run_id: str | None) -> str:
        return run_group(run_id) if run_id else ALL_RUNS_GROUP

    async def connect(self) -> None:
        run_id = self.scope["url_route"]["kwargs"].get("run_id")  # a UUID: the route's converter checked it
        run_id = None if run_id is None else str(run_id)
        refusal = await _refusal(self.scope.get("user"), run_id, self.permission)
        if refusal is None:
            # Joined before the handshake completes: whatever commits after the client sees the
            # socket open reaches it, so catching up once over REST leaves no gap.
            self.group = self.group_name(run_id)
            await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        if refusal is not None:
            await self.close(code=refusal)

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        """Read-only: whatever a client sends is ignored."""

    async def run_events(self, message: dict) -> None:
        await self.send_json(message["events"])


class RunEventsConsumer(_EventsConsumer):
    """Every event of one run."""


class AllRunsConsumer(_EventsConsumer):
    """Status changes of every run, and approvals requested and decided."""


class ApprovalsConsumer(_EventsConsumer):
    """A hint, to any signed-in user, that approvals changed: the inbox then asks what it may show."""

    permission = None

    def group_name(self, run_id: str | None) -> str:
        return APPROVALS_GROUP


class NoSuchSocket(AsyncJsonWebsocketConsumer):
    """Any other /ws/ path: refused with 4404, rather than a routing traceback in the server's log."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=NOT_FOUND)
