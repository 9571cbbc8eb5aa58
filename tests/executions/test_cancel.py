"""Cancelling frees the worker: built-in actions stop, custom ones can ask, the rest are terminated."""

import pytest

from config.celery_app import app
from executions.dispatch import STEP_EXECUTE, new_task_id
from executions.models import RunEvent
from executions.services import run_cancel, run_start
from executions.states import RunStatus, StepStatus
from tests.support.actions import answers_key, counter, executions_key, started_key
from tests.support.runs import step_row, steps, wait_for_run, wait_until, workflow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def test_cancelled_sleeps_free_every_process_of_the_worker_without_killing_one(celery_worker):
    pool = _pool(celery_worker)
    sleepy = workflow(steps({"id": "nap", "action": "sleep", "params": {"seconds": 60}}))
    sleepers = [run_start(workflow=sleepy)[0] for _ in range(celery_worker.concurrency)]
    for run in sleepers:
        _wait_step(run, "nap", StepStatus.RUNNING)
    for run in sleepers:
        run_cancel(run_id=run.pk, by="user:test")
    quick, _ = run_start(workflow=workflow(steps({"id": "a", "action": "echo"})))
    # Every process holds a 60 s sleep: the new run finishes only once the cancelled sleeps let go.
    assert wait_for_run(quick.pk, timeout=20).status == RunStatus.SUCCEEDED
    celery_worker.wait_idle(timeout=10)
    assert _pool(celery_worker) == pool  # the sleeps stopped themselves: no process was terminated
    for run in sleepers:
        assert step_row(run, "nap").status == StepStatus.CANCELLED
        assert not RunEvent.objects.filter(run=run, kind__in=["step.succeeded", "step.failed"]).exists()


def test_an_action_that_ignores_cancel_is_terminated_after_the_grace_and_never_runs_again(celery_worker):
    stubborn = workflow(steps({"id": "stubborn", "action": "test.ignore_cancel", "params": {"seconds": 60}}))
    run, _ = run_start(workflow=stubborn)
    wait_until(lambda: _count(started_key(str(run.pk), "stubborn")) == 1, timeout=20, what="the attempt started")
    row = step_row(run, "stubborn")
    pool = _pool(celery_worker)

    run_cancel(run_id=run.pk, by="user:test")
    assert _active(celery_worker) == [row.task_id]  # within the grace it still runs
    celery_worker.wait_idle(timeout=20)  # then its process is terminated...
    wait_until(lambda: _pool(celery_worker) not in ([], pool), what="the pool replacing the terminated process")
    assert len(_pool(celery_worker)) == celery_worker.concurrency  # ...and replaced
    assert _count(executions_key(str(run.pk), "stubborn")) == 0  # it never got to finish

    # Redis redelivers an unacknowledged message; a worker that never saw the revoke (another host, a
    # restart) would run it. A new task id stands for that worker: the claim must refuse the attempt.
    app.signature(STEP_EXECUTE, args=(row.pk, row.attempts), task_id=new_task_id()).apply_async()
    celery_worker.wait_idle(timeout=20)
    assert _count(started_key(str(run.pk), "stubborn")) == 1
    assert step_row(run, "stubborn").status == StepStatus.CANCELLED
    assert wait_for_run(run.pk).status == RunStatus.CANCELLED

    # The session worker still works with its new process.
    quick, _ = run_start(workflow=workflow(steps({"id": "a", "action": "echo"})))
    assert wait_for_run(quick.pk, timeout=20).status == RunStatus.SUCCEEDED


def test_an_action_that_ignores_sigterm_too_is_killed_after_the_grace(celery_worker):
    deaf = workflow(
        steps({"id": "deaf", "action": "test.ignore_cancel", "params": {"seconds": 60, "ignore_sigterm": True}})
    )
    run, _ = run_start(workflow=deaf)
    wait_until(lambda: _count(started_key(str(run.pk), "deaf")) == 1, timeout=20, what="the attempt started")
    pool = _pool(celery_worker)
    run_cancel(run_id=run.pk, by="user:test")
    celery_worker.wait_idle(timeout=20)  # SIGTERM does nothing; SIGKILL follows it
    wait_until(lambda: _pool(celery_worker) not in ([], pool), what="the pool replacing the killed process")
    assert len(_pool(celery_worker)) == celery_worker.concurrency
    assert _count(executions_key(str(run.pk), "deaf")) == 0
    assert wait_for_run(run.pk).status == RunStatus.CANCELLED


def test_context_cancelled_turns_true_when_the_run_is_cancelled(celery_worker):
    polite = workflow(steps({"id": "polite", "action": "test.until_cancelled", "params": {"seconds": 30}}))
    run, _ = run_start(workflow=polite)
    answers = answers_key(str(run.pk), "polite")
    wait_until(lambda: counter().lrange(answers, 0, -1) == [b"0"], timeout=20, what="the first answer, false")
    pool = _pool(celery_worker)
    run_cancel(run_id=run.pk, by="user:test")
    wait_until(lambda: counter().lrange(answers, 0, -1) == [b"0", b"1"], timeout=20, what="cancelled() true")
    celery_worker.wait_idle(timeout=10)
    assert _pool(celery_worker) == pool  # it returned by itself, before the grace ran out
    assert step_row(run, "polite").status == StepStatus.CANCELLED
    assert not RunEvent.objects.filter(run=run, kind="step.succeeded").exists()


def _wait_step(run, step_id: str, status: str) -> None:
    wait_until(lambda: step_row(run, step_id).status == status, timeout=20, what=f"{step_id} {status}")


def _count(key: str) -> int:
    return int(counter().get(key) or 0)


def _pool(worker) -> list[int]:
    """The pids of the worker's pool processes."""
    stats = app.control.inspect(destination=[worker.node], timeout=2).stats() or {}
    return sorted(stats.get(worker.node, {}).get("pool", {}).get("processes", []))


def _active(worker) -> list[str]:
    active = app.control.inspect(destination=[worker.node], timeout=2).active() or {}
    return [task["id"] for task in active.get(worker.node, [])]
