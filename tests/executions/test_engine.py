"""The engine end to end, on a real worker, a real Redis broker and the real database."""

import itertools

import pytest

from executions.models import RunEvent, StepRun
from executions.services import run_start
from executions.states import RunStatus, StepStatus
from tests.support.runs import step_row, steps, wait_for_run, workflow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def test_a_diamond_passes_outputs_along_and_records_timestamps_and_attempts():
    wf = workflow(
        steps(
            {"id": "a", "action": "echo", "params": {"n": "{{ input.n }}"}},
            {"id": "b", "action": "echo", "depends_on": ["a"], "params": {"double": "{{ steps.a.output.n * 2 }}"}},
            {"id": "c", "action": "echo", "depends_on": ["a"], "params": {"square": "{{ steps.a.output.n ** 2 }}"}},
            {
                "id": "d",
                "action": "echo",
                "depends_on": ["b", "c"],
                "params": {"sum": "{{ steps.b.output.double + steps.c.output.square }}", "text": "n={{ input.n }}"},
            },
            output="{{ steps.d.output }}",
        )
    )
    run, created = run_start(workflow=wf, input={"n": 3})
    assert created
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output == {"sum": 15, "text": "n=3"}
    rows = {row.step_id: row for row in StepRun.objects.filter(run=run)}
    assert {row.status for row in rows.values()} == {StepStatus.SUCCEEDED}
    for row in rows.values():
        assert row.attempts == 1
        assert row.queued_at <= row.started_at <= row.finished_at
    assert rows["d"].started_at >= max(rows["b"].finished_at, rows["c"].finished_at)
    assert rows["b"].started_at >= rows["a"].finished_at
    kinds = list(RunEvent.objects.filter(run=run).values_list("kind", flat=True))
    assert kinds[0] == "run.started" and kinds[-1] == "run.succeeded"
    assert kinds.count("step.succeeded") == 4


@pytest.mark.parametrize("width", [0, 1, 1000])
def test_for_each_records_every_branch_and_gathers_outputs_in_item_order(width):
    wf = workflow(
        steps(
            {
                "id": "price",
                "action": "echo",
                "for_each": "{{ input.items }}",
                "params": {"sku": "{{ item.sku }}", "position": "{{ index }}"},
            },
            {
                "id": "total",
                "action": "echo",
                "depends_on": ["price"],
                "params": {"n": "{{ steps.price.output | length }}"},
            },
            output="{{ steps.price.output }}",
        )
    )
    items = [{"sku": f"sku-{i}"} for i in range(width)]
    run, _ = run_start(workflow=wf, input={"items": items})
    run = wait_for_run(run.pk, timeout=180)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output == [{"sku": f"sku-{i}", "position": i} for i in range(width)]
    branches = StepRun.objects.filter(run=run, step_id="price", branch_index__isnull=False)
    assert branches.count() == width
    assert set(branches.values_list("status", flat=True)) <= {StepStatus.SUCCEEDED}
    assert sorted(branches.values_list("branch_index", flat=True)) == list(range(width))
    parent = step_row(run, "price")
    assert (parent.branch_count, parent.branches_done) == (width, width)
    assert step_row(run, "total").output == {"n": width}


def test_branches_get_item_index_and_a_distinct_idempotency_key():
    wf = workflow(steps({"id": "m", "action": "test.context", "for_each": "{{ input.xs }}", "params": {}}))
    run, _ = run_start(workflow=wf, input={"xs": ["a", "b"]})
    run = wait_for_run(run.pk)
    outputs = step_row(run, "m").output
    assert [(o["branch_index"], o["item"]) for o in outputs] == [(0, "a"), (1, "b")]
    assert outputs[0]["idempotency_key"] == f"{run.pk}:m:0"
    assert outputs[0]["idempotency_key"] != outputs[1]["idempotency_key"]


def test_a_step_that_fails_twice_then_succeeds_under_three_attempts_follows_the_backoff():
    wf = workflow(
        steps(
            {
                "id": "flaky",
                "action": "test.flaky",
                "params": {"succeed_on": 3},
                "retry": {"max_attempts": 3, "backoff": 0.5, "backoff_max": 10, "jitter": False},
            }
        )
    )
    run, _ = run_start(workflow=wf)
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    row = step_row(run, "flaky")
    assert row.attempts == 3
    assert row.output == {"attempt": 3}
    from tests.support.actions import counter

    times = [float(t) for t in counter().lrange(f"test:attempt-times:{run.pk}:flaky", 0, -1)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # No jitter: retry 1 waits 0.5 s, retry 2 waits 1 s.
    assert len(gaps) == 2
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95
    retrying = RunEvent.objects.filter(run=run, kind="step.retrying").order_by("id")
    assert [e.data["delay"] for e in retrying] == [0.5, 1.0]


def test_a_step_that_exhausts_its_attempts_fails_the_run_with_the_error_recorded():
    wf = workflow(
        steps(
            {
                "id": "flaky",
                "action": "test.flaky",
                "params": {"succeed_on": 3},
                "retry": {"max_attempts": 2, "backoff": 0.1},
            },
            {"id": "after", "action": "echo", "depends_on": ["flaky"]},
        )
    )
    run, _ = run_start(workflow=wf)
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.FAILED
    assert run.error == {
        "step": "flaky",
        "branch": None,
        "type": "RetryableError",
        "message": "attempt 2 failed on purpose",
    }
    flaky = step_row(run, "flaky")
    assert (flaky.status, flaky.attempts, flaky.error_type) == (StepStatus.FAILED, 2, "RetryableError")
    assert step_row(run, "after").status == StepStatus.CANCELLED


def test_a_permanent_error_fails_at_once_and_an_unknown_exception_keeps_its_traceback():
    wf = workflow(
        steps(
            {"id": "never", "action": "test.permanent", "retry": {"max_attempts": 5}, "on_failure": "continue"},
            {"id": "boom", "action": "test.crash", "retry": {"max_attempts": 2, "backoff": 0.1}},
        )
    )
    run, _ = run_start(workflow=wf)
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.FAILED
    never, boom = step_row(run, "never"), step_row(run, "boom")
    assert (never.status, never.attempts) == (StepStatus.FAILED, 1)
    assert (boom.status, boom.attempts, boom.error_type) == (StepStatus.FAILED, 2, "ZeroDivisionError")
    assert "ZeroDivisionError: division by zero, on purpose" in boom.error_traceback


def test_an_attempt_over_its_timeout_is_stopped_and_retried_then_failed():
    wf = workflow(
        steps(
            {
                "id": "slow",
                "action": "sleep",
                "params": {"seconds": 30},
                "timeout": 1,
                "retry": {"max_attempts": 2, "backoff": 0.1},
            }
        )
    )
    run, _ = run_start(workflow=wf)
    run = wait_for_run(run.pk, timeout=30)
    assert run.status == RunStatus.FAILED
    slow = step_row(run, "slow")
    assert (slow.attempts, slow.error_type) == (2, "TimeoutError")
    assert "past the step's timeout of 1s" in slow.error_message
    assert (slow.finished_at - slow.queued_at).total_seconds() < 15


def test_when_false_skips_and_a_skipped_or_continued_failure_satisfies_dependents():
    wf = workflow(
        steps(
            {"id": "big", "action": "echo", "when": "{{ input.total > 1000 }}", "params": {"t": "{{ input.total }}"}},
            {"id": "fails", "action": "test.permanent", "on_failure": "continue"},
            {
                "id": "after",
                "action": "echo",
                "depends_on": ["big", "fails"],
                "params": {"big": "{{ steps.big.output }}", "fails": "{{ steps.fails.status }}"},
            },
        )
    )
    run, _ = run_start(workflow=wf, input={"total": 10})
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert step_row(run, "big").status == StepStatus.SKIPPED
    assert step_row(run, "after").output == {"big": None, "fails": "failed"}


def test_a_failing_branch_fails_its_step_and_the_run():
    wf = workflow(
        steps(
            {
                "id": "each",
                "action": "test.flaky",
                "for_each": "{{ input.xs }}",
                "params": {"succeed_on": "{{ 1 if item else 99 }}"},
                "retry": {"max_attempts": 1},
            }
        )
    )
    run, _ = run_start(workflow=wf, input={"xs": [True, False, True]})
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.FAILED
    assert run.error["step"] == "each" and run.error["branch"] == 1
    assert step_row(run, "each").status == StepStatus.FAILED


def test_an_expression_error_fails_the_step_with_a_clear_message():
    wf = workflow(steps({"id": "a", "action": "echo", "params": {"x": "{{ input.missing.deeper }}"}}))
    run, _ = run_start(workflow=wf, input={})
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.FAILED
    assert run.error["type"] == "ExpressionError"
    assert "missing" in run.error["message"]
