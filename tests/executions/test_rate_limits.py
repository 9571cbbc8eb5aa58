"""Step rate limits: no window of `per` seconds holds more than `limit` starts, across worker processes."""

import pytest

from executions.models import RunEvent, StepRun
from executions.services import run_start
from executions.states import RunStatus, StepStatus
from tests.support.actions import counter
from tests.support.metrics import scrape, value
from tests.support.runs import steps, wait_for_run, workflow
from workflows.definition import parse_definition
from workflows.exceptions import DefinitionError

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def start_times(run, step: str) -> list[float]:
    return sorted(float(t) for t in counter().lrange(f"test:attempt-times:{run.pk}:{step}", 0, -1))


def busiest_window(times: list[float], per: float) -> int:
    return max(sum(1 for t in times if start <= t < start + per) for start in times)


def test_a_rate_limited_for_each_never_starts_more_than_the_limit_in_any_window():
    wf = workflow(
        steps(
            {
                "id": "call",
                "action": "test.record",
                "for_each": "{{ input.items }}",
                "params": {"n": "{{ item }}"},
                "rate_limit": {"limit": 5, "per": 1},
            }
        )
    )
    run, _ = run_start(workflow=wf, input={"items": list(range(30))})
    assert wait_for_run(run.pk, timeout=90).status == RunStatus.SUCCEEDED
    times = start_times(run, "call")
    assert len(times) == 30  # every branch ran, once
    assert busiest_window(times, 1.0) <= 5
    assert times[-1] - times[0] >= 5  # 30 starts at 5 a second: throttled, not merely lucky
    branches = StepRun.objects.filter(run=run, branch_index__isnull=False)
    assert set(branches.values_list("status", flat=True)) == {StepStatus.SUCCEEDED}
    assert set(branches.values_list("attempts", flat=True)) == {1}  # parking is not an attempt
    parked = RunEvent.objects.filter(run=run, kind="step.throttled").count()
    assert parked >= 20  # at most 5 of the first second's 30 start at once; the others wait their slot
    samples = scrape()
    labels = {"workflow": wf.slug, "step": "call", "queue": "default"}
    assert value(samples, "chordflow_step_throttled_total", **labels) == parked
    assert value(samples, "chordflow_step_attempts_total", **labels) == 30


def test_each_key_has_its_own_limit():
    wf = workflow(
        steps(
            {
                "id": "call",
                "action": "test.record",
                "for_each": "{{ input.items }}",
                "params": {"account": "{{ item.account }}"},
                "rate_limit": {"limit": 4, "per": 1, "key": "{{ params.account }}"},
            }
        )
    )
    items = [{"account": account} for account in ("a", "b") for _ in range(8)]
    run, _ = run_start(workflow=wf, input={"items": items})
    assert wait_for_run(run.pk, timeout=90).status == RunStatus.SUCCEEDED
    times = start_times(run, "call")
    assert len(times) == 16
    assert busiest_window(times, 1.0) > 4  # two accounts at once: both buckets ran in parallel


def test_rate_limits_are_checked_where_they_are_written():
    for rate, problem in [
        ({"limit": 0, "per": 1}, r"steps\[0\]\.rate_limit\.limit: must be a whole number"),
        ({"limit": 5, "per": 0}, r"steps\[0\]\.rate_limit\.per: must be a number of seconds"),
        ({"limit": 5, "key": "x"}, r"steps\[0\]\.rate_limit\.key: must be a string holding an expression"),
        ({"limit": 5, "key": "{{ input.x }}"}, r"steps\[0\]\.rate_limit\.key: unknown name 'input'"),
        ({"limit": 5, "burst": 2}, r"steps\[0\]\.rate_limit\.burst: unknown key"),
    ]:
        with pytest.raises(DefinitionError, match=problem):
            parse_definition(steps({"id": "a", "action": "echo", "rate_limit": rate}))
    spec = parse_definition(steps({"id": "a", "action": "echo"}, defaults={"rate_limit": {"limit": 3, "per": 2}}))
    assert (spec.steps[0].rate_limit.limit, spec.steps[0].rate_limit.per) == (3, 2.0)
