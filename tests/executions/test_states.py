"""The state machine and planning, without a database."""

import pytest

from executions import planning
from executions.states import (
    RUN_FINISHED,
    STEP_FINISHED,
    STEP_SOURCES,
    RunStatus,
    StepStatus,
    run_can,
    step_can,
)
from workflows.definition import parse_definition

S = StepStatus


def test_every_status_has_a_row_in_the_table():
    assert set(STEP_SOURCES) == set(StepStatus)


@pytest.mark.parametrize("finished", sorted(STEP_FINISHED))
def test_a_finished_step_never_runs_again_or_finishes_differently(finished):
    for target in (S.QUEUED, S.RUNNING, S.RETRYING, S.SUCCEEDED, S.SKIPPED):
        assert not step_can(finished, target)
    assert not step_can(finished, S.FAILED) and not step_can(finished, S.CANCELLED)


@pytest.mark.parametrize("finished", sorted(RUN_FINISHED))
def test_a_finished_run_only_leaves_its_status_by_an_explicit_retry(finished):
    assert not run_can(finished, RunStatus.SUCCEEDED)
    assert not run_can(finished, RunStatus.WAITING)
    assert run_can(finished, RunStatus.RUNNING) == (finished != RunStatus.SUCCEEDED)


def test_an_attempt_is_claimed_only_from_queued_or_retrying():
    assert {s for s in StepStatus if step_can(s, S.RUNNING)} == {S.PENDING, S.QUEUED, S.RETRYING}


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
