"""Run events: appended to RunEvent and, after commit, published to the Channels groups of the run.

Services record events inside `event_batch()`: the batch is written with one bulk insert and
published with one Channels round trip when the outermost batch closes, after the transaction
commits. Delivery through Channels is at most once; the RunEvent rows are the record.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import logging
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from executions.models import RunEvent

logger = logging.getLogger(__name__)

ALL_RUNS_GROUP = "runs"
_current: contextvars.ContextVar[list[RunEvent] | None] = contextvars.ContextVar("chordflow_events", default=None)


def run_group(run_id: Any) -> str:
    return f"run.{run_id}"


def record(
    run_id: Any,
    kind: str,
    *,
    step: str = "",
    branch: int | None = None,
    message: str = "",
    **data: Any,
) -> None:
    event = RunEvent(run_id=run_id, step_id=step, branch_index=branch, kind=kind, message=message, data=data)
    event.created_at = timezone.now()
    batch = _current.get()
    if batch is not None:
        batch.append(event)
    else:
        _save([event])


@contextmanager
def event_batch() -> Iterator[None]:
    """Collect the events recorded inside; write and schedule their broadcast on a clean exit."""
    if _current.get() is not None:  # nested: the outermost batch saves
        yield
        return
    batch: list[RunEvent] = []
    token = _current.set(batch)
    try:
        yield
    finally:
        _current.reset(token)
    if batch:
        _save(batch)


def _save(events: list[RunEvent]) -> None:
    RunEvent.objects.bulk_create(events)
    payloads = [payload(event) for event in events]
    transaction.on_commit(lambda: publish(payloads))


def payload(event: RunEvent) -> dict:
    body = {
        "id": event.pk,  # order and de-duplicate by it: publishes from several processes may interleave
        "type": event.kind,
        "run": str(event.run_id),
        "step": event.step_id or None,
        "branch": event.branch_index,
        "at": event.created_at.isoformat(),
        **event.data,
    }
    if event.message:
        body["message"] = event.message
    return body


def publish(payloads: list[dict]) -> None:
    """Hand events to this process's publisher thread; a failure is logged, never raised: events are hints."""
    if not payloads or not getattr(settings, "CHORDFLOW_BROADCAST_EVENTS", True):
        return
    _publisher.submit(payloads)


async def _send_all(layer, payloads: list[dict]) -> None:
    for body in payloads:
        message = {"type": "run.event", "event": body}
        await layer.group_send(run_group(body["run"]), message)
        await layer.group_send(ALL_RUNS_GROUP, message)


class _Publisher:
    """One thread per process with one event loop, sending what the transactions of that process commit.

    `async_to_sync(group_send)` from every commit built a new event loop and Redis connection each
    time: 15% of a step's time in the worker. The thread keeps one loop and its connection pool, takes
    everything queued since its last send as one batch, and takes the work off the task's path.
    It starts on first use in each process, so it survives the prefork pool's fork.
    """

    def __init__(self) -> None:
        self._pid: int | None = None
        self._queue: queue.SimpleQueue[list[dict] | None] = queue.SimpleQueue()
        self._idle = threading.Event()

    def submit(self, payloads: list[dict]) -> None:
        if self._pid != os.getpid():
            self._start()
        self._idle.clear()
        self._queue.put(payloads)

    def _start(self) -> None:
        self._pid = os.getpid()
        self._queue = queue.SimpleQueue()
        self._idle = threading.Event()
        threading.Thread(target=self._run, name="chordflow-events", daemon=True).start()
        atexit.register(self.flush)

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until everything submitted so far is sent (tests, and process exit)."""
        return self._pid != os.getpid() or self._idle.wait(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        layer = get_channel_layer()
        while True:
            batch = self._queue.get()
            while not self._queue.empty():
                batch = batch + (self._queue.get_nowait() or [])
            if layer is not None and batch:
                try:
                    loop.run_until_complete(_send_all(layer, batch))
                except Exception:
                    logger.warning("could not publish %d run events to Channels", len(batch), exc_info=True)
            if self._queue.empty():
                self._idle.set()


_publisher = _Publisher()
