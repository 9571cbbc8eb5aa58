"""What Flower sees: the task events a real worker sends, as Flower receives them."""

import threading

import pytest

from config.celery_app import app
from executions.services import run_start
from executions.states import RunStatus
from tests.support.runs import steps, wait_for_run, wait_until, workflow

pytestmark = pytest.mark.django_db(transaction=True)


class EventLog:
    """Task events from the broker's event exchange, collected in a thread (as Flower does)."""

    def __init__(self):
        self.events: list[dict] = []
        self.ready = threading.Event()
        self._receiver = None

    def __enter__(self):
        threading.Thread(target=self._listen, daemon=True).start()
        assert self.ready.wait(10), "the event receiver did not start"
        return self

    def _listen(self):
        with app.connection() as connection:
            self._receiver = app.events.Receiver(connection, handlers={"*": self.events.append})
            self.ready.set()
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def __exit__(self, *exc):
        self._receiver.should_stop = True

    def received(self, name: str) -> list[dict]:
        return [e for e in self.events if e["type"] == "task-received" and e.get("name") == name]

    def heartbeat(self, node: str) -> None:
        """Wait for the next heartbeat of `node`: its events are on, and whatever it sent before is here."""
        seen = len(self.events)
        wait_until(
            lambda: any(e["type"] == "worker-heartbeat" and e["hostname"] == node for e in self.events[seen:]),
            timeout=15,
            what=f"a heartbeat event from {node}",
        )


@pytest.fixture
def events(celery_worker):
    app.control.enable_events(destination=[celery_worker.node])
    try:
        with EventLog() as log:
            log.heartbeat(celery_worker.node)  # the worker has turned its events on
            yield log
    finally:
        app.control.disable_events(destination=[celery_worker.node])


def test_flower_sees_which_step_a_task_is_even_on_a_retry_and_no_housekeeping(events, celery_worker):
    wf = workflow(
        steps(
            {"id": "charge", "action": "test.flaky", "params": {"succeed_on": 2}, "retry": {"max_attempts": 2}},
        ),
        slug="shop",
    )
    run, _ = run_start(workflow=wf)
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
    app.signature("executions.sweep").apply_async()
    app.signature("approvals.expire").apply_async()
    celery_worker.wait_idle()
    events.heartbeat(celery_worker.node)  # sent after the last task's events: they are all here
    short = str(run.pk)[:8]
    labels = [e["args"] for e in events.received("executions.step_execute")]
    assert labels == [f"shop run {short} step charge attempt 1", f"shop run {short} step charge attempt 2"]
    assert not events.received("executions.sweep") and not events.received("approvals.expire")
