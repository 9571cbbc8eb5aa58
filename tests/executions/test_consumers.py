"""The websocket consumers: who may connect, and what reaches them after each commit."""

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from approvals.models import Approval
from approvals.services import approval_decide
from config.asgi import application
from executions import broadcast
from executions.models import RunEvent
from executions.services import run_start
from executions.states import RunStatus
from tests.support.api import user_with
from tests.support.runs import steps, wait_for_run, workflow

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://localhost")


def cookie_for(user: User | None) -> list[tuple[bytes, bytes]]:
    if user is None:
        return [ORIGIN]
    client = Client()
    client.force_login(user)
    return [ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


async def close_code(path: str, headers) -> int:
    socket = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await socket.connect()
    assert connected, f"{path} refused the handshake"
    closing = await socket.receive_output(timeout=3)
    await socket.disconnect()
    assert closing["type"] == "websocket.close", closing
    return closing["code"]


async def frames_until(socket: WebsocketCommunicator, done, timeout: float = 60) -> list[list[dict]]:
    """Every frame (a JSON list) until one holds an item for which `done` is true."""
    frames = []
    async with asyncio.timeout(timeout):
        while True:
            frame = await socket.receive_json_from(timeout=timeout)
            assert isinstance(frame, list), frame
            frames.append(frame)
            if any(done(item) for item in frame):
                return frames


def test_anonymous_users_without_permission_and_unknown_runs_are_refused_with_a_code():
    wf = workflow(steps({"id": "a", "action": "echo"}, defaults={"queue": "nobody-reads-this"}))
    run, _ = run_start(workflow=wf)
    nobody, stranger, viewer = cookie_for(None), cookie_for(user_with()), cookie_for(user_with("executions.view_run"))

    async def scenario():
        return [
            await close_code(f"/ws/runs/{run.pk}/", nobody),
            await close_code("/ws/runs/", nobody),
            await close_code(f"/ws/runs/{run.pk}/", stranger),
            await close_code("/ws/runs/", stranger),
            await close_code("/ws/runs/00000000-0000-0000-0000-000000000000/", viewer),
            await close_code("/ws/runs/not-a-run/", viewer),
            await close_code("/ws/elsewhere/", viewer),
            await close_code("/ws/approvals/", nobody),
        ]

    assert async_to_sync(scenario)() == [4401, 4401, 4403, 4403, 4404, 4404, 4404, 4401]


def test_a_cross_origin_page_cannot_open_the_socket():
    viewer = user_with("executions.view_run")
    session = cookie_for(viewer)[1]

    async def scenario():
        for origin in (b"http://evil.example", None):
            headers = [session] if origin is None else [(b"origin", origin), session]
            socket = WebsocketCommunicator(application, "/ws/runs/", headers=headers)
            connected, _ = await socket.connect()
            await socket.disconnect()
            assert not connected, origin

    async_to_sync(scenario)()


@pytest.mark.usefixtures("celery_worker")
def test_a_run_socket_receives_the_runs_events_in_order_after_they_commit():
    people = [User.objects.create_user(name, password="pw") for name in ("alice",)]
    wf = workflow(
        steps(
            {"id": "approve", "type": "approval", "params": {"approvers": {"users": ["alice"]}}},
            {"id": "ship", "action": "echo", "depends_on": ["approve"]},
        )
    )
    run, _ = run_start(workflow=wf)
    wait_for_run(run.pk, statuses={RunStatus.WAITING})
    viewer, approver = cookie_for(user_with("executions.view_run")), cookie_for(people[0])

    async def scenario():
        socket = WebsocketCommunicator(application, f"/ws/runs/{run.pk}/", headers=viewer)
        overview = WebsocketCommunicator(application, "/ws/runs/", headers=viewer)
        inbox = WebsocketCommunicator(application, "/ws/approvals/", headers=approver)
        assert (await socket.connect())[0] and (await overview.connect())[0] and (await inbox.connect())[0]
        approval = await sync_to_async(Approval.objects.get)(run=run)
        await sync_to_async(approval_decide)(approval_id=approval.pk, user=people[0], decision="approve")
        finished = lambda item: item["type"] == "run.succeeded"  # noqa: E731
        frames = await frames_until(socket, finished)
        summary = await frames_until(overview, finished)
        hints = await inbox.receive_json_from(timeout=5)
        await socket.disconnect()
        await overview.disconnect()
        await inbox.disconnect()
        return frames, summary, hints

    frames, summary, hints = async_to_sync(scenario)()
    assert hints == [{"type": "approvals.changed"}]  # to any approver; no run, step or name in it
    received = [item for frame in frames for item in frame]
    decided_at = RunEvent.objects.get(run=run, kind="approval.decided").pk
    recorded = list(RunEvent.objects.filter(run=run, id__gte=decided_at).values_list("id", "kind"))
    # Everything from the decision on arrives once. The decision's events (this process) and the
    # worker's may arrive in either order: each process sends its own commits in order; ids order them.
    assert sorted((item["id"], item["type"]) for item in received) == recorded
    for frame in frames:
        assert [item["id"] for item in frame] == sorted(item["id"] for item in frame)
    ship = next(item for item in received if item["type"] == "step.succeeded" and item["step"] == "ship")
    assert ship["status"] == "succeeded" and ship["attempt"] == 1 and ship["run"] == str(run.pk)
    # The all-runs socket carries this run's run-level and approval events, and no step event.
    mine = [item for frame in summary for item in frame if item["run"] == str(run.pk)]
    assert {item["type"] for item in mine} >= {"approval.decided", "run.succeeded"}
    assert all(item["step"] is None or item["type"].startswith("approval.") for item in mine)


def test_a_wide_batch_reaches_the_socket_as_one_frame_with_progress_counts():
    run, _ = run_start(workflow=workflow(steps({"id": "a", "action": "echo"}, defaults={"queue": "nobody"})))
    viewer = cookie_for(user_with("executions.view_run"))
    branch_events = [
        {"id": 1000 + i, "type": "step.succeeded" if i % 10 else "step.failed", "run": str(run.pk),
         "step": "fan", "branch": i, "status": "x", "at": "2026-01-01T00:00:00+00:00"}
        for i in range(1000)
    ]  # fmt: skip
    step_event = {"id": 3000, "type": "step.failed", "run": str(run.pk), "step": "fan", "branch": None}
    assert broadcast._publisher.flush()  # the start's own events are out before the socket joins

    async def scenario():
        socket = WebsocketCommunicator(application, f"/ws/runs/{run.pk}/", headers=viewer)
        assert (await socket.connect())[0]
        await sync_to_async(broadcast.publish)([*branch_events, {**step_event, "at": "2026-01-01T00:00:01+00:00"}])
        frame = await socket.receive_json_from(timeout=5)
        assert await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()
        return frame

    frame = async_to_sync(scenario)()
    hint, last = [item for item in frame if item["step"] == "fan"]  # (nothing else of this run is sent)
    assert len(frame) == 2
    assert hint == {
        "type": "branches.progress", "run": str(run.pk), "step": "fan", "id": None, "last_event": 1999,
        "events": {"step.failed": 100, "step.succeeded": 900},
    }  # fmt: skip
    assert last["id"] == 3000 and last["branch"] is None


def test_a_few_branch_events_pass_as_they_are():
    bodies = [{"id": i, "type": "step.succeeded", "run": "r", "step": "fan", "branch": i} for i in range(3)]
    assert broadcast.coalesce(bodies) == bodies
    assert broadcast.group_messages(bodies) == [("run.r", {"type": "run.events", "events": bodies})]
