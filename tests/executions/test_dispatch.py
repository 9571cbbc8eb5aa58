"""Step tasks say what they are: Flower shows a step's workflow, run, step, branch and attempt."""

import json

import pytest

from config.celery_app import app
from executions import attempts
from executions.services import run_start
from tests.support.runs import step_row, steps, workflow

pytestmark = pytest.mark.django_db
QUEUE = "test-dispatch-labels"  # no worker reads it: the messages stay in the broker to be read


def queued_messages() -> list[dict]:
    with app.connection_for_read() as conn:
        raw = conn.default_channel.client.lrange(QUEUE, 0, -1)
    return [json.loads(message) for message in raw]


@pytest.fixture
def empty_queue():
    with app.connection_for_write() as conn:
        conn.default_channel.client.delete(QUEUE)
    yield
    with app.connection_for_write() as conn:
        conn.default_channel.client.delete(QUEUE)


def test_a_step_task_names_its_workflow_run_step_branch_and_attempt(empty_queue, django_capture_on_commit_callbacks):
    wf = workflow(
        steps(
            {"id": "fetch", "action": "echo", "params": {"xs": [1, 2]}},
            {"id": "charge", "action": "echo", "depends_on": ["fetch"], "for_each": "{{ steps.fetch.output.xs }}"},
            defaults={"queue": QUEUE},
        ),
        slug="shop-orders",
    )
    with django_capture_on_commit_callbacks(execute=True):
        run, _ = run_start(workflow=wf)  # publishes `fetch`
    with django_capture_on_commit_callbacks(execute=True):
        attempts.step_execute(step_run_id=step_row(run, "fetch").pk, attempt=1)  # fans out `charge`
    labels = sorted(message["headers"]["argsrepr"] for message in queued_messages())
    short = str(run.pk)[:8]
    assert labels == [
        f"shop-orders run {short} step charge branch 0 attempt 1",
        f"shop-orders run {short} step charge branch 1 attempt 1",
        f"shop-orders run {short} step fetch attempt 1",
    ]


def test_the_periodic_housekeeping_sends_no_task_events():
    """Beat's sweep, expiry and schedule tick run every few seconds: in Flower they would bury the steps."""
    app.loader.import_default_modules()
    for name in ("executions.sweep", "approvals.expire", "executions.schedule_tick"):
        assert app.tasks[name].send_events is False, name
    assert app.tasks["executions.step_execute"].send_events is True
