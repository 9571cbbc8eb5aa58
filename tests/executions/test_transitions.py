"""The gate: listeners get every transition once, in order, after commit; a rollback sends nothing."""

import subprocess
from pathlib import Path

import pytest
from django.db import transaction

from executions import events, transitions
from executions.models import Run, RunEvent
from executions.services import run_cancel, run_start
from executions.states import RunStatus
from tests.support.runs import step_row
from tests.support.services import diamond, nowhere_depth, play, purge_nowhere

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(autouse=True)
def empty_queue():
    purge_nowhere()


@pytest.fixture
def received():
    batches: list[list[dict]] = []
    listener = batches.append
    events.subscribe(listener)
    yield batches
    events.unsubscribe(listener)


def test_a_listener_receives_every_transition_of_a_run_in_order_once_after_commit(received):
    with transaction.atomic():
        run, _ = run_start(workflow=diamond())
        assert received == []  # nothing before commit
    for step_id in ("a", "b", "c", "d"):
        play(step_row(run, step_id))
    delivered = [event for batch in received for event in batch]
    recorded = list(RunEvent.objects.filter(run=run).order_by("id").values_list("id", "kind", "step_id"))
    assert [(e["id"], e["type"], e["step"] or "") for e in delivered] == recorded
    assert [e["type"] for e in delivered if not e["step"]] == ["run.started", "run.succeeded"]
    assert all(e["run"] == str(run.pk) and e["status"] for e in delivered)


def test_a_transaction_that_rolls_back_publishes_no_task_and_tells_no_listener(received):
    with pytest.raises(RuntimeError), transaction.atomic():
        run_start(workflow=diamond())
        raise RuntimeError("the caller's transaction fails after the start")
    assert Run.objects.count() == 0
    assert nowhere_depth() == 0
    assert received == []


def test_tasks_are_published_only_once_the_transaction_commits():
    with transaction.atomic():
        run_start(workflow=diamond())
        assert nowhere_depth() == 0
    assert nowhere_depth() == 1


def test_every_way_a_run_ends_passes_run_finish():
    finished: list[tuple] = []

    def hook(*, run_id, status):
        finished.append((run_id, status))

    transitions.on_run_finish(hook)
    try:
        done, _ = run_start(workflow=diamond())
        for step_id in ("a", "b", "c", "d"):
            play(step_row(done, step_id))
        cancelled, _ = run_start(workflow=diamond())
        run_cancel(run_id=cancelled.pk)
    finally:
        transitions.off_run_finish(hook)
    assert finished == [(done.pk, RunStatus.SUCCEEDED), (cancelled.pk, RunStatus.CANCELLED)]


def test_no_status_is_written_outside_the_gate():
    """Only executions/transitions.py changes a run's or a step's status."""
    found = subprocess.run(
        ["git", "grep", "-nE", r"update\((\*\*\{)?.*status=|\.status = .*save\(|update_or_create\(.*status",
         "--", "executions", "approvals", ":!executions/transitions.py"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    offending = [line for line in found.stdout.splitlines() if "Approval" not in line and "A.CANCELLED" not in line]
    assert offending == []
