"""Cancel, retry, idempotent starts and input validation, on a real worker."""

import threading

import pytest
from django.db import connections

from executions.exceptions import InvalidTransitionError
from executions.models import Run, RunEvent, StepRun
from executions.services import run_cancel, run_retry, run_start
from executions.states import RunStatus, StepStatus
from tests.support.actions import counter, executions_key
from tests.support.runs import step_row, steps, wait_for_run, wait_until, workflow
from workflows.exceptions import InputValidationError

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def test_cancel_stops_the_run_and_a_task_that_finishes_afterwards_changes_nothing(celery_worker):
    wf = workflow(
        steps(
            {"id": "slow", "action": "test.sleep_then_record", "params": {"seconds": 1.5}},
            {"id": "after", "action": "echo", "depends_on": ["slow"]},
        )
    )
    run, _ = run_start(workflow=wf)
    wait_for_run(run.pk, statuses={RunStatus.RUNNING}, timeout=10)
    _wait_step(run, "slow", StepStatus.RUNNING)
    cancelled = run_cancel(run_id=run.pk, by="user:test")
    assert cancelled.status == RunStatus.CANCELLED
    assert {r.status for r in StepRun.objects.filter(run=run)} == {StepStatus.CANCELLED}
    # The running attempt still finishes on the worker; its success must change nothing.
    wait_until(lambda: int(counter().get(executions_key(str(run.pk), "slow")) or 0) == 1, timeout=20)
    celery_worker.wait_idle()  # the finished attempt has tried to record its success
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert step_row(run, "slow").status == StepStatus.CANCELLED
    assert step_row(run, "after").status == StepStatus.CANCELLED
    assert RunEvent.objects.filter(run=run, kind="step.succeeded").count() == 0
    with pytest.raises(InvalidTransitionError, match="only pending, running or waiting runs can be cancelled"):
        run_cancel(run_id=run.pk)


def test_retry_reruns_failed_steps_and_what_follows_but_not_what_succeeded():
    wf = workflow(
        steps(
            {"id": "first", "action": "test.record"},
            {
                "id": "flaky",
                "action": "test.flaky",
                "depends_on": ["first"],
                "params": {"succeed_on": 2},
                "retry": {"max_attempts": 1},
            },
            {"id": "last", "action": "test.record", "depends_on": ["flaky"]},
        )
    )
    run, _ = run_start(workflow=wf)
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.FAILED
    with pytest.raises(InvalidTransitionError):
        run_cancel(run_id=run.pk)

    run = run_retry(run_id=run.pk, by="user:test")
    assert run.error is None
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert int(counter().get(executions_key(str(run.pk), "first"))) == 1
    assert int(counter().get(executions_key(str(run.pk), "last"))) == 1
    flaky = step_row(run, "flaky")
    assert flaky.attempts == 2 and flaky.output == {"attempt": 2}
    with pytest.raises(InvalidTransitionError, match="only failed or cancelled runs can be retried"):
        run_retry(run_id=run.pk)


def test_a_second_start_with_the_same_key_returns_the_first_run_even_at_the_same_moment():
    wf = workflow(steps({"id": "a", "action": "echo"}))
    results: list = []
    barrier = threading.Barrier(4)

    def start():
        try:
            barrier.wait()
            results.append(run_start(workflow=wf, idempotency_key="order-42"))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert len({run.pk for run, _created in results}) == 1
    assert sorted(created for _run, created in results) == [False, False, False, True]
    assert Run.objects.filter(workflow=wf).count() == 1
    # Let its step finish: a worker still writing would deadlock the flush that ends the test.
    wait_for_run(results[0][0].pk)


def test_input_that_breaks_the_schema_is_refused_with_every_error_and_no_run():
    wf = workflow(
        steps(
            {"id": "a", "action": "echo"},
            input_schema={
                "type": "object",
                "required": ["order_id", "total"],
                "properties": {"order_id": {"type": "string"}, "total": {"type": "number", "minimum": 0}},
            },
        )
    )
    with pytest.raises(InputValidationError) as caught:
        run_start(workflow=wf, input={"total": -5})
    problems = {(p.path, p.message) for p in caught.value.problems}
    assert ("input", "'order_id' is a required property") in problems
    assert ("input.total", "-5 is less than the minimum of 0") in problems
    assert Run.objects.count() == 0


def _wait_step(run, step_id: str, status: str) -> None:
    wait_until(lambda: step_row(run, step_id).status == status, timeout=20, what=f"{step_id} {status}")
