"""Self-healing: a worker killed with kill -9 costs at most the attempt it was running."""

import time

import pytest

from executions.models import StepRun
from executions.services import run_start
from executions.states import RUN_FINISHED, RunStatus, StepStatus
from executions.sweeper import sweep
from tests.support.actions import counter, executions_key
from tests.support.runs import step_row, steps, wait_for_run, wait_until, workflow
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.django_db(transaction=True)
QUEUE = "recovery"


def heal_until_finished(run, timeout: float = 90):
    """What beat does in production: sweep every so often until the run ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sweep()
        run.refresh_from_db()
        if run.status in RUN_FINISHED:
            return run
        time.sleep(0.5)
    return wait_for_run(run.pk, timeout=0)


def test_kill_9_mid_step_then_a_new_worker_completes_the_run_without_rerunning_succeeded_steps():
    wf = workflow(
        steps(
            {"id": "first", "action": "test.record"},
            {
                "id": "slow",
                "action": "test.sleep_then_record",
                "depends_on": ["first"],
                "params": {"seconds": 2},
                "timeout": 3,
                "retry": {"max_attempts": 2, "backoff": 0.1},
            },
            {"id": "last", "action": "test.record", "depends_on": ["slow"]},
            defaults={"queue": QUEUE},
        )
    )
    doomed = WorkerProcess(name="doomed", queues=QUEUE).start()
    try:
        run, _ = run_start(workflow=wf)
        wait_until(lambda: step_row(run, "slow").status == StepStatus.RUNNING)
    finally:
        doomed.kill()
    rescuer = WorkerProcess(name="rescuer", queues=QUEUE).start()
    try:
        run = heal_until_finished(run)
    finally:
        rescuer.stop()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert int(counter().get(executions_key(str(run.pk), "first"))) == 1
    assert int(counter().get(executions_key(str(run.pk), "last"))) == 1
    slow = step_row(run, "slow")
    assert slow.attempts == 2  # the killed attempt counted as failed, the next one succeeded
    assert int(counter().get(executions_key(str(run.pk), "slow"))) == 1  # the killed one never finished


def test_kill_9_in_the_middle_of_a_fan_out_loses_no_branch_and_reruns_none_that_succeeded():
    width = 16
    wf = workflow(
        steps(
            {
                "id": "each",
                "action": "test.sleep_then_record",
                "for_each": "{{ input.xs }}",
                "params": {"seconds": 0.3},
                "timeout": 3,
                "retry": {"max_attempts": 3, "backoff": 0.1},
            },
            defaults={"queue": QUEUE},
        )
    )
    doomed = WorkerProcess(name="doomed2", queues=QUEUE).start()
    try:
        run, _ = run_start(workflow=wf, input={"xs": list(range(width))})
        wait_until(
            lambda: (
                StepRun.objects.filter(run=run, status=StepStatus.SUCCEEDED, branch_index__isnull=False).count() >= 3
            )
        )
    finally:
        doomed.kill()
    succeeded_before = set(
        StepRun.objects.filter(run=run, status=StepStatus.SUCCEEDED, branch_index__isnull=False).values_list(
            "branch_index", flat=True
        )
    )
    rescuer = WorkerProcess(name="rescuer2", queues=QUEUE).start()
    try:
        run = heal_until_finished(run)
    finally:
        rescuer.stop()
    assert_no_branch_lost_or_rerun(run, width, succeeded_before)


def assert_no_branch_lost_or_rerun(run, width: int, succeeded_before: set[int], step: str = "each") -> None:
    """The run succeeded with every branch; those recorded before the crash finished exactly once."""
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert len(step_row(run, step).output) == width
    for branch in range(width):
        finished = int(counter().get(executions_key(str(run.pk), step, branch)) or 0)
        assert finished >= 1, f"branch {branch} was lost"
        if branch in succeeded_before:
            assert finished == 1, f"branch {branch} succeeded before the crash and ran again"
