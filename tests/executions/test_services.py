"""Services without a worker: joins under concurrency, idempotence, query bounds, the sweep.

Steps here go to a queue no worker reads, and the tests play the worker's part by calling the
services a task calls.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.celery_app import app
from executions import attempts, branches
from executions.dispatch import queue_depth
from executions.models import RunEvent, StepRun
from executions.services import run_advance, run_cancel, run_retry, run_start
from executions.states import RunStatus, StepStatus
from executions.sweeper import sweep
from tests.support.runs import step_row, steps, workflow
from tests.support.services import NOWHERE, at_once, diamond, play, purge_nowhere

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def empty_queue():
    purge_nowhere()


def test_two_parallel_steps_finishing_at_the_same_moment_start_the_join_once():
    run, _ = run_start(workflow=diamond())
    play(step_row(run, "a"))
    b, c = step_row(run, "b"), step_row(run, "c")
    at_once(lambda: play(b), lambda: play(c))
    d = step_row(run, "d")
    assert d.status == StepStatus.QUEUED
    assert RunEvent.objects.filter(run=run, step_id="d", kind="step.queued").count() == 1


def test_two_branches_finishing_at_the_same_moment_join_once():
    wf = workflow(
        steps(
            {"id": "m", "action": "echo", "for_each": "{{ input.xs }}", "params": {"x": "{{ item }}"}},
            {"id": "after", "action": "echo", "depends_on": ["m"]},
            defaults={"queue": NOWHERE},
        )
    )
    run, _ = run_start(workflow=wf, input={"xs": [1, 2, 3]})
    first, second, third = StepRun.objects.filter(run=run, branch_index__isnull=False).order_by("branch_index")
    play(first, {"x": 1})
    at_once(lambda: play(second, {"x": 2}), lambda: play(third, {"x": 3}))
    parent = step_row(run, "m")
    assert parent.status == StepStatus.SUCCEEDED
    assert parent.output == [{"x": 1}, {"x": 2}, {"x": 3}]
    assert parent.branches_done == 3
    assert RunEvent.objects.filter(run=run, step_id="m", branch_index=None, kind="step.succeeded").count() == 1
    assert RunEvent.objects.filter(run=run, step_id="after", kind="step.queued").count() == 1


def test_a_duplicated_callback_or_a_redelivered_attempt_changes_nothing():
    run, _ = run_start(workflow=diamond())
    a = step_row(run, "a")
    play(a)
    events_before = RunEvent.objects.filter(run=run).count()
    run_advance(run_id=run.pk)  # a duplicate chord callback
    branches.step_join(parent_id=a.pk)  # a join callback for a step that is no fan-out
    assert attempts.step_claim(step_run_id=a.pk, attempt=1) is None  # the same attempt delivered again
    assert attempts.step_execute(step_run_id=a.pk, attempt=1) is None
    assert RunEvent.objects.filter(run=run).count() == events_before
    assert step_row(run, "b").status == StepStatus.QUEUED


def branch_queries(width: int) -> tuple[int, int]:
    """Queries for one middle branch's whole life (claim + success), and for the last one (+ join)."""
    wf = workflow(
        steps(
            {"id": "m", "action": "echo", "for_each": "{{ input.xs }}", "params": {"x": "{{ item }}"}},
            {"id": "after", "action": "echo", "depends_on": ["m"]},
            defaults={"queue": NOWHERE},
        )
    )
    run, _ = run_start(workflow=wf, input={"xs": list(range(width))})
    branches = list(StepRun.objects.filter(run=run, branch_index__isnull=False).order_by("branch_index"))
    for branch in branches[:-2]:
        play(branch, branch.item)
    with CaptureQueriesContext(connection) as middle:
        play(branches[-2], 0)
    with CaptureQueriesContext(connection) as last:
        play(branches[-1], 0)
    assert step_row(run, "m").status == StepStatus.SUCCEEDED
    return len(middle), len(last)


def test_sql_queries_per_step_transition_do_not_grow_with_the_fan_out_width():
    narrow, wide = branch_queries(5), branch_queries(200)
    assert narrow == wide
    middle, last = wide
    # claim (update, select, event) + success (update, event, counter, join check); the last adds the
    # join (gather, update, event) and the run advance (lock, steps, context, queue next, event).
    assert middle <= 11, middle
    assert last <= 26, last


def test_the_sweep_republishes_a_lost_message_but_not_one_waiting_in_its_queue():
    run, _ = run_start(workflow=diamond())
    a = step_row(run, "a")
    later = timezone.now() + timedelta(seconds=60)
    assert queue_depth(NOWHERE) == 1
    assert sweep(now=later)["requeued"] == 0  # still waiting in the queue: not lost
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(NOWHERE)  # the broker lost it
    assert sweep(now=later)["requeued"] == 1
    assert queue_depth(NOWHERE) == 1
    assert step_row(run, "a").status == StepStatus.QUEUED
    assert step_row(run, "a").task_id != a.task_id


def test_the_sweep_fails_an_overdue_attempt_and_retries_or_fails_it_by_policy():
    wf = workflow(
        steps(
            {"id": "a", "action": "echo", "timeout": 5, "retry": {"max_attempts": 2, "backoff": 0}},
            defaults={"queue": NOWHERE},
        )
    )
    run, _ = run_start(workflow=wf)
    attempts.step_claim(step_run_id=step_row(run, "a").pk, attempt=1)  # then the worker dies
    assert sweep(now=timezone.now() + timedelta(seconds=2))["attempts_expired"] == 0  # not overdue yet
    assert sweep(now=timezone.now() + timedelta(seconds=10))["attempts_expired"] == 1
    a = step_row(run, "a")
    assert (a.status, a.error_type) == (StepStatus.RETRYING, "LostAttemptError")
    attempts.step_claim(step_run_id=a.pk, attempt=2)  # the retry starts, and its worker dies too
    sweep(now=timezone.now() + timedelta(seconds=10))
    run.refresh_from_db()
    assert step_row(run, "a").status == StepStatus.FAILED
    assert run.status == RunStatus.FAILED
    assert "did not finish within the step's timeout of 5s" in run.error["message"]


def test_a_long_retry_delay_is_parked_in_the_database_and_fired_by_the_sweep(settings):
    settings.CHORDFLOW_MAX_COUNTDOWN = 1
    wf = workflow(
        steps(
            {
                "id": "a",
                "action": "test.flaky",
                "params": {"succeed_on": 2},
                "retry": {"max_attempts": 2, "backoff": 50, "jitter": False},
            },
            defaults={"queue": NOWHERE},
        )
    )
    run, _ = run_start(workflow=wf)
    assert attempts.step_execute(step_run_id=step_row(run, "a").pk, attempt=1) is None  # parked, no countdown
    a = step_row(run, "a")
    assert (a.status, a.task_id) == (StepStatus.RETRYING, "")
    assert 49 < (a.next_retry_at - timezone.now()).total_seconds() <= 50
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(NOWHERE)
    assert sweep()["retries_fired"] == 0
    assert sweep(now=timezone.now() + timedelta(seconds=51))["retries_fired"] == 1
    assert queue_depth(NOWHERE) == 1


def chain_step_queries(length: int) -> int:
    steps_ = [{"id": f"s{i}", "action": "echo", **({"depends_on": [f"s{i - 1}"]} if i else {})} for i in range(length)]
    run, _ = run_start(workflow=workflow(steps(*steps_, defaults={"queue": NOWHERE})))
    for index in range(length // 2):
        play(step_row(run, f"s{index}"))
    middle = step_row(run, f"s{length // 2}")
    with CaptureQueriesContext(connection) as captured:
        play(middle)
    assert step_row(run, f"s{length // 2 + 1}").status == StepStatus.QUEUED
    return len(captured)


def test_a_chain_step_reads_its_neighbourhood_not_every_step():
    assert chain_step_queries(6) == chain_step_queries(60)
    # and the rows it reads do not grow either: only the next step and what it needs
    steps_ = [{"id": f"s{i}", "action": "echo", **({"depends_on": [f"s{i - 1}"]} if i else {})} for i in range(40)]
    run, _ = run_start(workflow=workflow(steps(*steps_, defaults={"queue": NOWHERE})))
    with CaptureQueriesContext(connection) as captured:
        play(step_row(run, "s0"))
    advance = next(q["sql"] for q in captured.captured_queries if "executions_run" in q["sql"] and "IN (" in q["sql"])
    assert "'s0'" in advance and "'s1'" in advance and "'s2'" not in advance


def test_a_wide_fan_out_is_published_by_a_worker_task_with_only_unclaimed_branches():
    from executions.services import fan_out_publish

    wf = workflow(steps({"id": "m", "action": "echo", "for_each": "{{ input.xs }}"}, defaults={"queue": NOWHERE}))
    run, _ = run_start(workflow=wf, input={"xs": list(range(50))})
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(NOWHERE)
    first = StepRun.objects.get(run=run, branch_index=0)
    attempts.step_claim(step_run_id=first.pk, attempt=1)
    assert fan_out_publish(parent_id=step_row(run, "m").pk) == 49
    assert queue_depth(NOWHERE) == 25  # chunks of 2 (50 / CHORDFLOW_FAN_OUT_CHUNKS); the first is branch 1 alone


def test_the_caller_of_a_wide_fan_out_publishes_one_small_task(settings):
    settings.CHORDFLOW_INLINE_FAN_OUT = 10
    wf = workflow(steps({"id": "m", "action": "echo", "for_each": "{{ input.xs }}"}, defaults={"queue": NOWHERE}))
    run_start(workflow=wf, input={"xs": list(range(30))})
    assert queue_depth(NOWHERE) == 1  # the publish task, for a worker of the step's queue; not 30 branches
    with app.connection_for_write() as conn:
        body = conn.default_channel.client.lindex(NOWHERE, 0)
    assert b"executions.publish_fan_out" in body


def test_a_run_whose_only_work_left_is_an_approval_reads_waiting_then_running_again():
    """prep -> approval -> pay: once prep succeeds and the approval is pending, the run is waiting."""
    from django.contrib.auth.models import User

    from approvals.models import Approval
    from approvals.services import approval_decide

    User.objects.create_user("alice")
    wf = workflow(
        steps(
            {"id": "prep", "action": "echo"},
            {
                "id": "approve",
                "type": "approval",
                "depends_on": ["prep"],
                "params": {"approvers": {"users": ["alice"]}},
            },
            {"id": "pay", "action": "echo", "depends_on": ["approve"]},
            defaults={"queue": NOWHERE},
        )
    )
    run, _ = run_start(workflow=wf)
    play(step_row(run, "prep"))
    run.refresh_from_db()
    assert (step_row(run, "approve").status, run.status) == (StepStatus.WAITING, RunStatus.WAITING)
    approval = Approval.objects.get(run=run)
    approval_decide(approval_id=approval.pk, user=User.objects.get(username="alice"), decision="approve")
    run.refresh_from_db()
    assert (step_row(run, "pay").status, run.status) == (StepStatus.QUEUED, RunStatus.RUNNING)
    kinds = list(RunEvent.objects.filter(run=run, step_id="").values_list("kind", flat=True))
    assert kinds == ["run.started", "run.waiting", "run.started"]


def test_a_stale_message_cannot_start_a_step_whose_dependencies_have_not_run():
    """u fails (continue), b after it is retrying; cancel, retry: b is pending, and a late message for
    b's second attempt (its revoke lost) must not claim it before u runs again."""
    wf = workflow(
        steps(
            {"id": "u", "action": "test.permanent", "on_failure": "continue"},
            {"id": "b", "action": "test.flaky", "depends_on": ["u"], "params": {"succeed_on": 9}},
            defaults={"queue": NOWHERE, "retry": {"max_attempts": 3, "backoff": 0.01, "jitter": False}},
        )
    )
    run, _ = run_start(workflow=wf)
    assert attempts.step_execute(step_run_id=step_row(run, "u").pk, attempt=1) is None
    assert step_row(run, "u").status == StepStatus.FAILED
    assert attempts.step_execute(step_run_id=step_row(run, "b").pk, attempt=1) is not None  # a countdown
    assert step_row(run, "b").status == StepStatus.RETRYING
    run_cancel(run_id=run.pk)
    run_retry(run_id=run.pk)
    assert (step_row(run, "u").status, step_row(run, "b").status) == (StepStatus.QUEUED, StepStatus.PENDING)
    assert attempts.step_claim(step_run_id=step_row(run, "b").pk, attempt=2) is None
    assert step_row(run, "b").status == StepStatus.PENDING
    assert not RunEvent.objects.filter(run=run, step_id="b", kind="step.started", data__attempt=2).exists()


@pytest.mark.parametrize("round_", range(5))
def test_a_branch_failing_while_a_sibling_succeeds_records_both_outcomes(on_postgres, round_):
    """The failing branch locks its step, then its siblings; the succeeding sibling locks itself, then
    the step. PostgreSQL aborts one of the two: its outcome must be recorded all the same."""
    wf = workflow(
        steps(
            {"id": "m", "action": "echo", "for_each": "{{ input.xs }}", "retry": {"max_attempts": 1}},
            defaults={"queue": NOWHERE},
        )
    )
    run, _ = run_start(workflow=wf, input={"xs": list(range(8))})
    branches = list(StepRun.objects.filter(run=run, branch_index__isnull=False).order_by("branch_index"))
    claimed = [attempts.step_claim(step_run_id=b.pk, attempt=1) for b in branches]
    failure = attempts.Failure("Boom", "on purpose", retryable=False)
    at_once(
        lambda: attempts.step_fail(row=claimed[0], step=wf_step(run, "m"), failure=failure),
        *[lambda row=row: attempts.step_succeed(row=row, output=1) for row in claimed[1:]],
    )
    run.refresh_from_db()
    assert (run.status, step_row(run, "m").status) == (RunStatus.FAILED, StepStatus.FAILED)
    assert StepRun.objects.get(pk=branches[0].pk).status == StepStatus.FAILED
    assert not StepRun.objects.filter(run=run, status__in=[StepStatus.RUNNING, StepStatus.QUEUED]).exists()


def wf_step(run, step_id):
    from workflows.services import version_spec

    return version_spec(run.version).step(step_id)


@pytest.mark.parametrize("end", ["succeed", "fail", "retry"])
def test_a_stale_attempt_changes_nothing_once_its_row_runs_a_newer_one(end):
    run, _ = run_start(
        workflow=workflow(
            steps({"id": "a", "action": "test.superseded", "params": {"end": end}}, defaults={"queue": NOWHERE})
        )
    )
    row = step_row(run, "a")
    events_before = RunEvent.objects.filter(run=run).count()
    assert attempts.step_execute(step_run_id=row.pk, attempt=1) is None
    row.refresh_from_db()
    # attempt 2 owns the row now: attempt 1's outcome (output, failure or retry) is not recorded
    assert (row.status, row.attempts, row.output, row.error_type) == (StepStatus.RUNNING, 2, None, "")
    assert list(RunEvent.objects.filter(run=run).values_list("kind", flat=True))[events_before:] == ["step.started"]
