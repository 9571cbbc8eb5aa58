"""The state machine and planning, without a database."""

import pytest

from executions import planning
from executions.planning import RunView
from executions.states import (
    RUN_FINISHED,
    STEP_FINISHED,
    RunMove,
    RunStatus,
    StepMove,
    StepStatus,
    transitions,
)
from workflows.definition import parse_definition

S, R = StepStatus, RunStatus


def test_every_status_is_reached_by_some_named_move():
    assert {t.target for t in transitions(StepMove)} == set(StepStatus)
    assert {t.target for t in transitions(RunMove)} == set(RunStatus) - {R.PENDING}


@pytest.mark.parametrize("finished", sorted(STEP_FINISHED))
def test_a_finished_step_leaves_its_status_only_by_a_run_retrys_reset(finished):
    assert [t.name for t in transitions(StepMove) if t.allows(finished)] == ["reset"]


@pytest.mark.parametrize("finished", sorted(RUN_FINISHED))
def test_a_finished_run_only_leaves_its_status_by_an_explicit_retry(finished):
    leaving = [t for t in transitions(RunMove) if t.allows(finished)]
    assert leaving == ([RunMove.RETRY] if finished != R.SUCCEEDED else [])


def test_an_attempt_is_claimed_only_from_queued_or_retrying():
    assert StepMove.CLAIM.sources == {S.QUEUED, S.RETRYING}
    assert not StepMove.CLAIM.allows(S.PENDING)  # a stale message never starts a step before its dependencies
    assert StepMove.FAN_OUT.sources == {S.PENDING}  # only a for_each step goes straight from pending to running


def test_an_operator_retry_leaves_only_waiting():
    assert StepMove.RESOLVE_RETRY.sources == {S.WAITING} and StepMove.RESOLVE_RETRY.target == S.QUEUED


SPEC = parse_definition(
    {
        "name": "x",
        "steps": [
            {"id": "a", "action": "echo"},
            {"id": "b", "action": "echo", "depends_on": ["a"], "on_failure": "continue"},
            {"id": "c", "action": "echo", "depends_on": ["a"]},
            {"id": "d", "action": "echo", "depends_on": ["b", "c"]},
        ],
    }
)


def test_ready_steps_and_joins():
    assert planning.ready_steps(SPEC, dict.fromkeys("abcd", S.PENDING)) == ["a"]
    statuses = {"a": S.SUCCEEDED, "b": S.PENDING, "c": S.PENDING, "d": S.PENDING}
    assert planning.ready_steps(SPEC, statuses) == ["b", "c"]
    assert planning.is_joined(SPEC, ["b", "c"]) and not planning.is_joined(SPEC, ["a"])
    # b failed but continues; c skipped: both satisfy d
    assert planning.ready_steps(SPEC, {"a": S.SUCCEEDED, "b": S.FAILED, "c": S.SKIPPED, "d": S.PENDING}) == ["d"]
    assert planning.ready_steps(SPEC, {"a": S.FAILED, "b": S.PENDING, "c": S.PENDING, "d": S.PENDING}) == []


def test_run_outcome():
    assert planning.run_outcome(SPEC, {"a": S.SUCCEEDED, "b": S.RUNNING, "c": S.SUCCEEDED, "d": S.PENDING}) is None
    done = {"a": S.SUCCEEDED, "b": S.FAILED, "c": S.SUCCEEDED, "d": S.SUCCEEDED}
    assert planning.run_outcome(SPEC, done) == RunStatus.SUCCEEDED
    assert planning.run_outcome(SPEC, {**done, "c": S.FAILED}) == RunStatus.FAILED
    assert planning.is_waiting({"a": S.WAITING, "b": S.PENDING})
    assert not planning.is_waiting({"a": S.WAITING, "b": S.RUNNING})


# --- plan: pure, from statuses and outputs to moves -----------------------------------------------
def make_plan(definition, statuses, *, outputs=None, run_status=R.RUNNING, run_input=None, partial=False):
    asked: list[set] = []

    def read_outputs(step_ids):
        asked.append(set(step_ids))
        return {s: (outputs or {}).get(s) for s in step_ids}

    spec = parse_definition(definition)
    view = RunView(id="r1", workflow="wf", input=run_input or {}, status=run_status)
    result = planning.plan(spec, statuses, run=view, read_outputs=read_outputs, partial=partial)
    return result, asked


def kinds(result):
    return [(m.kind, m.step) for m in result.moves]


APPROVAL = {"approvers": {"users": ["alice"]}}
PREP_APPROVE_PAY = {
    "name": "x",
    "steps": [
        {"id": "prep", "action": "echo", "params": {"n": "{{ input.n }}"}},
        {"id": "approve", "type": "approval", "depends_on": ["prep"], "params": APPROVAL},
        {"id": "pay", "action": "echo", "depends_on": ["approve"], "params": {"by": "{{ steps.approve.output }}"}},
    ],
}


def test_plan_queues_the_first_step_with_its_params_resolved():
    result, asked = make_plan(
        PREP_APPROVE_PAY, dict.fromkeys(["prep", "approve", "pay"], S.PENDING), run_input={"n": 3}
    )
    assert kinds(result) == [("queue", "prep")]
    assert result.moves[0].params == {"n": 3}
    assert result.run is None and asked == []  # nothing read: no expression reads a step


def test_plan_waits_when_only_a_person_is_left_and_resumes_when_work_starts():
    statuses = {"prep": S.SUCCEEDED, "approve": S.PENDING, "pay": S.PENDING}
    result, _ = make_plan(PREP_APPROVE_PAY, statuses)
    assert kinds(result) == [("wait", "approve")] and result.run == R.WAITING
    # a partial plan (the neighbourhood of prep) cannot tell whether anything else is in flight
    partial, _ = make_plan(PREP_APPROVE_PAY, {"prep": S.SUCCEEDED, "approve": S.PENDING}, partial=True)
    assert not partial.complete
    decided = {"prep": S.SUCCEEDED, "approve": S.SUCCEEDED, "pay": S.PENDING}
    resumed, asked = make_plan(PREP_APPROVE_PAY, decided, outputs={"approve": {"ok": 1}}, run_status=R.WAITING)
    assert kinds(resumed) == [("queue", "pay")] and resumed.run == R.RUNNING
    assert resumed.moves[0].params == {"by": {"ok": 1}} and asked == [{"approve"}]


def test_plan_cascades_through_skips_and_an_empty_for_each_then_finishes_the_run_with_its_output():
    definition = {
        "name": "x",
        "output": "{{ steps.m.output | length }}",
        "steps": [
            {"id": "gate", "action": "echo", "when": "{{ input.go }}"},
            {"id": "m", "action": "echo", "depends_on": ["gate"], "for_each": "{{ input.xs }}"},
        ],
    }
    result, _ = make_plan(definition, {"gate": S.PENDING, "m": S.PENDING}, run_input={"go": False, "xs": []})
    assert kinds(result) == [("skip", "gate"), ("succeed_empty", "m")]
    assert (result.run, result.output) == (R.SUCCEEDED, 0)


def test_plan_fans_out_one_params_per_item():
    definition = {
        "name": "x",
        "steps": [{"id": "m", "action": "echo", "for_each": "{{ input.xs }}", "params": "{{ item }}"}],
    }
    result, _ = make_plan(definition, {"m": S.PENDING}, run_input={"xs": [4, 5]})
    assert kinds(result) == [("fan_out", "m")] and result.moves[0].items == [4, 5] and result.moves[0].params == [4, 5]


def test_plan_fails_the_run_on_an_expression_error_unless_the_step_continues():
    definition = {
        "name": "x",
        "steps": [
            {"id": "a", "action": "echo", "params": {"x": "{{ input.missing.deeper }}"}, "on_failure": "continue"},
            {"id": "b", "action": "echo", "depends_on": ["a"], "params": {"x": "{{ input.missing.deeper }}"}},
        ],
    }
    result, _ = make_plan(definition, {"a": S.PENDING, "b": S.PENDING})
    assert kinds(result) == [("fail", "a"), ("fail", "b")]
    assert result.run == R.FAILED
    assert (result.error["step"], result.error["type"]) == ("b", "ExpressionError") and "missing" in result.error[
        "message"
    ]


def test_plan_of_a_running_chain_step_in_its_neighbourhood_needs_no_other_step():
    definition = {
        "name": "x",
        "steps": [{"id": f"s{i}", "action": "echo", **({"depends_on": [f"s{i - 1}"]} if i else {})} for i in range(4)],
    }
    result, _ = make_plan(definition, {"s1": S.SUCCEEDED, "s2": S.PENDING}, partial=True)
    assert result.complete and kinds(result) == [("queue", "s2")] and result.run is None
    nothing, _ = make_plan(definition, {"s1": S.SUCCEEDED, "s2": S.QUEUED}, partial=True)
    assert not nothing.complete  # nothing became ready: only every step can say why
