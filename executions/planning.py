"""Pure planning over a run's step statuses: what is ready, how it joins, how the run ends."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from executions.states import STEP_FINISHED, STEP_IN_FLIGHT, RunStatus, StepStatus
from workflows.spec import WorkflowSpec

Statuses = Mapping[str, str]


def dependency_satisfied(spec: WorkflowSpec, dep: str, status: str) -> bool:
    """Succeeded and skipped satisfy a dependency; failed does too when that step continues on failure."""
    if status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED):
        return True
    return status == StepStatus.FAILED and spec.step(dep).continues_on_failure


def ready_steps(spec: WorkflowSpec, statuses: Statuses) -> list[str]:
    """Pending steps whose every dependency is satisfied, in definition order."""
    return [
        step.id
        for step in spec.steps
        if statuses.get(step.id) == StepStatus.PENDING
        and all(dependency_satisfied(spec, dep, statuses[dep]) for dep in step.depends_on)
    ]


def is_joined(spec: WorkflowSpec, step_ids: Iterable[str]) -> bool:
    """Whether some later step waits for two or more of `step_ids` (so they are dispatched as a chord)."""
    started = set(step_ids)
    return any(len(started.intersection(step.depends_on)) >= 2 for step in spec.steps)


def run_outcome(spec: WorkflowSpec, statuses: Statuses) -> RunStatus | None:
    """The run's final status once every step has finished; None while any has not."""
    if any(status not in STEP_FINISHED for status in statuses.values()):
        return None
    fatal = any(
        status == StepStatus.FAILED and not spec.step(step_id).continues_on_failure
        for step_id, status in statuses.items()
    )
    cancelled = any(status == StepStatus.CANCELLED for status in statuses.values())
    if fatal or cancelled:
        return RunStatus.FAILED
    return RunStatus.SUCCEEDED


def is_waiting(statuses: Statuses) -> bool:
    """Nothing is in flight and at least one step waits for a person."""
    values = set(statuses.values())
    return StepStatus.WAITING in values and not values & STEP_IN_FLIGHT


def expression_context(
    *, run_id: Any, workflow: str, run_input: Any, statuses: Statuses, outputs: Mapping[str, Any]
) -> dict[str, Any]:
    """What expressions see: input, run, and steps.<id>.output / .status for every step."""
    return {
        "input": run_input,
        "run": {"id": str(run_id), "workflow": workflow},
        "steps": {
            step_id: {"status": str(status), "output": outputs.get(step_id)} for step_id, status in statuses.items()
        },
    }
