"""The engine end to end, on a real worker, a real Redis broker and the real database."""

import pytest

from executions.models import RunEvent, StepRun
from executions.services import run_start
from executions.states import RunStatus, StepStatus
from tests.support.runs import steps, wait_for_run, workflow

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
