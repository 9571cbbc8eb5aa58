"""A chain's next step runs in the task that finished the one before it: claimed in that step's
outcome transaction, with no message of its own, and recorded exactly as a step alone."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions import attempts, continuation, timelimits
from executions.dispatch import message_limits
from executions.models import RunEvent, StepRun
from executions.services import run_start
from executions.states import RunStatus, StepStatus
from tests.support.actions import counter, executions_key
from tests.support.runs import step_row, steps, wait_for_run, wait_until, workflow
from tests.support.services import NOWHERE, nowhere_depth, purge_nowhere

pytestmark = pytest.mark.django_db(transaction=True)


def chain(length: int, action: str = "test.record", **step) -> list[dict]:
    return [
        {"id": f"s{i}", "action": action, **step, **({"depends_on": [f"s{i - 1}"]} if i else {})} for i in range(length)
    ]


def task_ids(run) -> list[str]:
    return list(StepRun.objects.filter(run=run).order_by("id").values_list("task_id", flat=True))


@pytest.mark.usefixtures("celery_worker")
def test_a_chain_runs_in_the_task_of_its_first_step_and_every_step_is_recorded_as_alone():
    run, _ = run_start(workflow=workflow(steps(*chain(5))))
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert len(set(task_ids(run))) == 1  # one message carried the whole chain
    for index in range(5):
        assert int(counter().get(executions_key(str(run.pk), f"s{index}"))) == 1
        kinds = RunEvent.objects.filter(run=run, step_id=f"s{index}").order_by("id").values_list("kind", flat=True)
        assert list(kinds) == ["step.queued", "step.started", "step.succeeded"]
    rows = StepRun.objects.filter(run=run).order_by("id")
    assert all(row.attempts == 1 and row.started_at <= row.finished_at for row in rows)
    # s0 waited for its message; each later step was claimed as it was queued, by the task before it
    assert rows[0].started_at > rows[0].queued_at
    assert all(row.queued_at == row.started_at for row in rows[1:])


@pytest.mark.usefixtures("celery_worker")
def test_steps_made_ready_together_still_spread_over_the_workers():
    wf = workflow(
        steps(
            {"id": "a", "action": "test.record"},
            {"id": "b", "action": "test.record", "depends_on": ["a"]},
            {"id": "c", "action": "test.record", "depends_on": ["a"]},
            {"id": "d", "action": "test.record", "depends_on": ["b", "c"]},
        )
    )
    run = wait_for_run(run_start(workflow=wf)[0].pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    a, b, c = (step_row(run, s).task_id for s in "abc")
    assert len({a, b, c}) == 2  # one of b and c went on in a's task, the other got a message
    assert step_row(run, "d").status == StepStatus.SUCCEEDED


@pytest.mark.usefixtures("celery_worker")
def test_a_continued_step_that_fails_retries_alone_and_the_chain_goes_on():
    wf = workflow(
        steps(
            {"id": "a", "action": "test.record"},
            {"id": "b", "action": "test.flaky", "depends_on": ["a"], "params": {"succeed_on": 2},
             "retry": {"max_attempts": 2, "backoff": 0.1}},
            {"id": "c", "action": "test.record", "depends_on": ["b"]},
        )
    )  # fmt: skip
    run = wait_for_run(run_start(workflow=wf)[0].pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    a, b, c = (step_row(run, s) for s in "abc")
    assert b.attempts == 2 and b.output == {"attempt": 2}
    assert b.task_id != a.task_id  # its retry travelled in a task of its own ...
    assert c.task_id == b.task_id  # ... which went on with the next step
    kinds = list(RunEvent.objects.filter(run=run, step_id="b").order_by("id").values_list("kind", flat=True))
    assert kinds == ["step.queued", "step.started", "step.retrying", "step.started", "step.succeeded"]


@pytest.mark.usefixtures("celery_worker")
def test_a_step_on_another_queue_or_too_long_for_the_budget_gets_a_message_of_its_own():
    purge_nowhere()
    wf = workflow(
        steps(
            {"id": "a", "action": "test.record", "timeout": 1},
            {"id": "long", "action": "test.record", "depends_on": ["a"], "timeout": 600},
            {"id": "elsewhere", "action": "test.record", "depends_on": ["long"], "queue": NOWHERE},
        )
    )
    run, _ = run_start(workflow=wf)
    wait_until(lambda: step_row(run, "elsewhere").status == StepStatus.QUEUED, what="the step on NOWHERE queued")
    # a's message allows 1 + 5 + 15 s: a step of 600 s does not fit in it
    assert step_row(run, "long").task_id != step_row(run, "a").task_id
    assert nowhere_depth() == 1  # a message for the step no worker of this queue runs
    purge_nowhere()


def test_a_continued_step_costs_one_commit_and_five_statements(monkeypatch):
    """In process, as a pool process would run it: each step's outcome commits with the next one's claim."""
    monkeypatch.setattr(timelimits, "in_pool_process", lambda: True)
    run, _ = run_start(workflow=workflow(steps(*chain(12, action="echo"), defaults={"queue": NOWHERE})))
    purge_nowhere()
    first = step_row(run, "s0")
    soft_limit, _hard = message_limits(300)  # the message of a step with the default timeout
    with continuation.offered(task_id=first.task_id, queue=NOWHERE, soft_limit=soft_limit) as offer:
        attempts.step_execute(step_run_id=first.pk, attempt=1)
        with CaptureQueriesContext(connection) as captured:
            assert attempts.continue_chain(offer) == 11
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert nowhere_depth() == 0  # not one message after the first
    queries = [q["sql"] for q in captured.captured_queries]
    commits = [q for q in queries if q.startswith(("COMMIT", "RELEASE"))]
    statements = [q for q in queries if not q.startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"))]
    # 10 middle steps: succeed, lock and read the neighbourhood, queue and claim the next, the events;
    # the last one also finishes the run.
    assert len(commits) == 11, commits  # a step alone commits twice: its claim, then its outcome
    assert len(statements) <= 5 * 11 + 1, len(statements)  # a step alone: 6
