"""Limits in the engine: outputs, expression values in later steps, for_each width, wide starts, secrets.

Steps go to a queue no worker reads; the tests call the services a task calls (the same code, in
this process, on the real database and broker).
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions import attempts
from executions.models import Run, RunEvent, StepRun
from executions.services import run_advance, run_start
from executions.states import RunStatus, StepStatus
from tests.support.runs import step_row, steps, workflow
from tests.support.services import NOWHERE, purge_nowhere

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def empty_queue():
    purge_nowhere()


def execute(run, step_id: str) -> StepRun:
    row = step_row(run, step_id)
    attempts.step_execute(step_run_id=row.pk, attempt=row.attempts + 1)
    return step_row(run, step_id)


def one_step(**step) -> Run:
    wf = workflow(steps({"id": "s", **step}, defaults={"queue": NOWHERE}))
    run, _ = run_start(workflow=wf)
    return run


def test_an_output_over_the_limit_fails_the_step_at_once_and_is_not_stored():
    run = one_step(action="test.big_output", params={"bytes": 2 * 1024 * 1024})
    row = execute(run, "s")
    assert row.status == StepStatus.FAILED and row.attempts == 1  # permanent: no retry
    assert row.output is None
    assert "the action's output is over the limit of 1.0 MiB (CHORDFLOW_MAX_OUTPUT_BYTES)" in row.error_message
    assert Run.objects.get(pk=run.pk).status == RunStatus.FAILED


def test_an_output_with_a_nul_character_fails_the_step_instead_of_breaking_the_write():
    row = execute(one_step(action="test.nul_output"), "s")
    assert row.status == StepStatus.FAILED
    assert "NUL character or a lone surrogate at .text" in row.error_message


def test_a_later_steps_bad_expression_fails_that_step_and_never_undoes_the_earlier_success():
    wf = workflow(
        steps(
            {"id": "a", "action": "echo", "params": {"n": 1}},
            {"id": "b", "action": "echo", "depends_on": ["a"], "params": {"r": "{{ range(3) }}"}},
            defaults={"queue": NOWHERE},
        )
    )
    run, _ = run_start(workflow=wf)
    a = execute(run, "a")
    assert a.status == StepStatus.SUCCEEDED and a.attempts == 1 and a.output == {"n": 1}
    b = step_row(run, "b")
    assert b.status == StepStatus.FAILED and b.error_type == "ExpressionError"
    assert "'{{ range(3) }}': its value is not JSON: a range" in b.error_message
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error["type"] == "ExpressionError"


def test_a_bad_expression_in_a_first_step_fails_the_run_at_start_instead_of_a_500():
    run = one_step(action="echo", params={"k": "{{ input.keys() }}"})
    assert run.status == RunStatus.FAILED
    assert "dict_keys" in step_row(run, "s").error_message


def test_a_for_each_wider_than_the_limit_fails_its_step_with_the_setting_named(settings):
    settings.CHORDFLOW_MAX_FOR_EACH = 3
    run = one_step(action="echo", for_each="{{ range(4)|list }}")
    row = step_row(run, "s")
    assert row.status == StepStatus.FAILED
    assert "for_each gave 4 items, over the limit of 3 (CHORDFLOW_MAX_FOR_EACH)" in row.error_message
    assert not StepRun.objects.filter(run=run, branch_index__isnull=False).exists()


def step_run_inserts(call) -> int:
    with CaptureQueriesContext(connection) as queries:
        call()
    return sum('INSERT INTO "executions_steprun"' in query["sql"] for query in queries)


def test_a_start_that_fans_out_wide_returns_at_once_and_a_worker_writes_the_branches(settings):
    settings.CHORDFLOW_START_INLINE_BRANCHES = 2
    wf = workflow(steps({"id": "m", "action": "echo", "for_each": "{{ input.xs }}"}, defaults={"queue": NOWHERE}))
    started = []
    # the start writes the run's own step rows and no branch: those are a worker's (run_advance on commit)
    assert step_run_inserts(lambda: started.append(run_start(workflow=wf, input={"xs": [1, 2, 3]})[0])) == 1
    run = started[0]
    run_advance(run_id=run.pk)  # what the task does on a worker; a no-op if a worker already did it
    assert step_row(run, "m").status == StepStatus.RUNNING
    assert StepRun.objects.filter(run=run, branch_index__isnull=False).count() == 3
    # within the bound, the start fans out itself: its step rows, then its branches
    assert step_run_inserts(lambda: run_start(workflow=wf, input={"xs": [1, 2]})) == 2


def test_the_start_plan_sees_the_runs_own_id():
    run = one_step(action="echo", params={"id": "{{ run.id }}"})
    assert step_row(run, "s").input == {"id": str(run.pk)}


# --- secrets ---------------------------------------------------------------------------------------

SECRET = "sk_live_51H8very-secret"


def secret_run(monkeypatch, *, fail: bool = False, value: str | None = SECRET, input=None) -> Run:
    if value is not None:
        monkeypatch.setenv("CHORDFLOW_SECRET_PAYMENT_API_KEY", value)
    else:
        monkeypatch.delenv("CHORDFLOW_SECRET_PAYMENT_API_KEY", raising=False)
    wf = workflow(
        steps(
            {
                "id": "pay",
                "action": "test.leak",
                "params": {
                    "auth": "Bearer {{ secret('PAYMENT_API_KEY') }}",
                    "fail": fail,
                    "note": "{{ input.note | default('') }}",
                },
                "retry": {"max_attempts": 1},
            },
            defaults={"queue": NOWHERE},
        )
    )
    run, _ = run_start(workflow=wf, input=input or {})
    return run


def stored_text(run) -> str:
    """Everything the database holds about a run, as text."""
    rows = StepRun.objects.filter(run=run).values()
    events = RunEvent.objects.filter(run=run).values()
    return repr(list(Run.objects.filter(pk=run.pk).values())) + repr(list(rows)) + repr(list(events))


def test_a_secret_reaches_the_action_but_no_row_input_output_or_event(monkeypatch):
    run = secret_run(monkeypatch)
    assert SECRET not in stored_text(run)
    assert step_row(run, "pay").input["auth"].startswith("Bearer ⟪secret:PAYMENT_API_KEY:")
    row = execute(run, "pay")
    assert row.status == StepStatus.SUCCEEDED
    # the action saw the value (it echoed it), and what was stored shows the placeholder
    assert row.output["auth"] == "Bearer ⟪secret:PAYMENT_API_KEY⟫"
    assert SECRET not in stored_text(run)


def test_a_secret_in_an_error_message_is_redacted(monkeypatch):
    run = secret_run(monkeypatch, fail=True)
    row = execute(run, "pay")
    assert row.status == StepStatus.FAILED
    assert "Bearer ⟪secret:PAYMENT_API_KEY⟫" in row.error_message
    assert SECRET not in stored_text(run)


def test_a_missing_secret_fails_the_step_saying_which_variable_to_set(monkeypatch):
    row = execute(secret_run(monkeypatch, value=None), "pay")
    assert row.status == StepStatus.FAILED
    assert "secret PAYMENT_API_KEY is not set: set CHORDFLOW_SECRET_PAYMENT_API_KEY" in row.error_message


def test_a_reference_forged_in_the_input_is_not_revealed(monkeypatch):
    first = secret_run(monkeypatch)
    stolen = step_row(first, "pay").input["auth"].removeprefix("Bearer ")
    run = secret_run(monkeypatch, input={"note": stolen})  # a reference copied from another run
    row = execute(run, "pay")
    assert row.output["note"] == stolen  # left as it was: signed for another run
    assert SECRET not in stored_text(run)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"when": "{{ secret('A') }}"}, "secret() may be used only in the params of an action step"),
        ({"params": {"k": "{{ secret(input.name) }}"}}, "secret() takes one quoted name"),
        ({"params": {"k": "{{ secret('lower') }}"}}, "secret() takes one quoted name"),
    ],
)
def test_secret_is_checked_at_save(step, message):
    from workflows.definition import parse_definition
    from workflows.exceptions import DefinitionError

    with pytest.raises(DefinitionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_definition(steps({"id": "s", "action": "echo", **step}))
