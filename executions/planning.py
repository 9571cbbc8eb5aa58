"""Pure planning: from a run's step statuses, the moves to make now (queue, skip, fan out, wait, fail)
and what the run's status becomes. No database: the caller reads rows in and applies the plan."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from executions.states import STEP_FINISHED, STEP_IN_FLIGHT, RunStatus, StepStatus
from workflows import expressions, limits
from workflows.exceptions import ExpressionError
from workflows.spec import STEP_TYPE_ACTION, StepSpec, WorkflowSpec

S, R = StepStatus, RunStatus
Statuses = Mapping[str, str]
OutputReader = Callable[[set[str]], Mapping[str, Any]]

QUEUE, FAN_OUT, SUCCEED_EMPTY, SKIP, WAIT, FAIL = "queue", "fan_out", "succeed_empty", "skip", "wait", "fail"
# the status each move leaves its step in
MOVE_STATUS = {
    QUEUE: S.QUEUED,
    FAN_OUT: S.RUNNING,
    SUCCEED_EMPTY: S.SUCCEEDED,
    SKIP: S.SKIPPED,
    WAIT: S.WAITING,
    FAIL: S.FAILED,
}


@dataclass(frozen=True)
class RunView:
    """What planning needs of a run besides its steps."""

    id: Any
    workflow: str
    input: Any
    status: str


@dataclass(frozen=True)
class Move:
    kind: str
    step: str
    params: Any = None  # the resolved params; for a fan-out, one per item
    items: list = field(default_factory=list)  # a fan-out's items
    message: str = ""


@dataclass(frozen=True)
class Plan:
    moves: tuple[Move, ...] = ()
    run: RunStatus | None = None  # what the run's status becomes; None: it stays
    output: Any = None  # the run's output, when it succeeds
    error: dict | None = None  # what failed the run, when it fails
    complete: bool = True  # False: part of the steps could not decide it; plan again with every step


def error_dict(*, step: str, branch: int | None, error_type: str, message: str) -> dict:
    return {"step": step, "branch": branch, "type": error_type, "message": message}


def dependency_satisfied(spec: WorkflowSpec, dep: str, status: str) -> bool:
    """Succeeded and skipped satisfy a dependency; failed does too when that step continues on failure."""
    if status in (S.SUCCEEDED, S.SKIPPED):
        return True
    return status == S.FAILED and spec.step(dep).continues_on_failure


def ready_steps(spec: WorkflowSpec, statuses: Statuses) -> list[str]:
    """Pending steps whose every dependency is satisfied, in definition order.

    Looks only at the steps in `statuses`: a partial plan of a long chain reads a few, not all.
    """
    pending = sorted((spec.positions[s] for s, status in statuses.items() if status == S.PENDING))
    return [
        step.id
        for step in (spec.steps[index] for index in pending)
        if all(dependency_satisfied(spec, dep, statuses[dep]) for dep in step.depends_on)
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
        status == S.FAILED and not spec.step(step_id).continues_on_failure for step_id, status in statuses.items()
    )
    cancelled = any(status == S.CANCELLED for status in statuses.values())
    return R.FAILED if fatal or cancelled else R.SUCCEEDED


def is_waiting(statuses: Statuses) -> bool:
    """Nothing is in flight and at least one step waits for a person."""
    values = set(statuses.values())
    return S.WAITING in values and not values & STEP_IN_FLIGHT


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


def plan(
    spec: WorkflowSpec,
    statuses: Statuses,
    *,
    run: RunView,
    read_outputs: OutputReader,
    partial: bool = False,
    defer_wider_than: int | None = None,
) -> Plan:
    """The moves that start what is ready, and the run's status after them.

    `statuses` are the top-level steps' (every step, or with `partial` only the neighbourhood of a
    step that just succeeded); `read_outputs(ids)` gives the outputs of succeeded steps, asked only
    for those an expression reads. A skipped step, an empty for_each or a failure that continues
    can make more steps ready: planning goes on until nothing is. A partial plan is complete only
    when it starts work (queue or fan out) and nothing else: anything else needs every step to settle.
    With `defer_wider_than`, a for_each over more items than that stops planning, before its
    branches' params are evaluated: the plan is incomplete, and a worker makes it.
    """
    statuses = dict(statuses)
    outputs: dict[str, Any] = {}
    moves: list[Move] = []
    while ready := ready_steps(spec, statuses):
        wanted = {s for step_id in ready for s in spec.step(step_id).reads if statuses.get(s) == S.SUCCEEDED}
        if wanted - outputs.keys():
            outputs.update(read_outputs(wanted - outputs.keys()))
        values = expression_context(
            run_id=run.id, workflow=run.workflow, run_input=run.input, statuses=statuses, outputs=outputs
        )
        for step_id in ready:
            step = spec.step(step_id)
            try:
                move = _move(step, values, defer_wider_than)
            except _Deferred:
                return Plan(complete=False)
            moves.append(move)
            statuses[step_id] = MOVE_STATUS[move.kind]
            outputs[step_id] = [] if move.kind == SUCCEED_EMPTY else None
            values["steps"][step_id] = {"status": str(statuses[step_id]), "output": outputs[step_id]}
            if move.kind == FAIL and not step.continues_on_failure:
                error = error_dict(step=step_id, branch=None, error_type="ExpressionError", message=move.message)
                return Plan(tuple(moves), run=R.FAILED, error=error)
        if partial and any(m.kind not in (QUEUE, FAN_OUT) for m in moves):
            return Plan(complete=False)
    if partial:
        if not moves:
            return Plan(complete=False)
        return Plan(tuple(moves), run=R.RUNNING if run.status == R.WAITING else None)
    return _settle(spec, statuses, tuple(moves), run, outputs, read_outputs)


class _Deferred(Exception):
    """A fan-out wider than the caller plans itself: a worker plans it."""


def _branch_params(step: StepSpec, values: dict[str, Any], items: list) -> list:
    """Each branch's params, bounded together in size, and in time: the expression timeout x (10 + branches / 1000)."""
    most = limits.limit("CHORDFLOW_MAX_FAN_OUT_BYTES")
    seconds = float(limits.limit("CHORDFLOW_EXPRESSION_TIMEOUT")) * (10 + len(items) / 1000)
    deadline = time.monotonic() + seconds
    params, total = [], 0
    for index, item in enumerate(items):
        resolved = expressions.evaluate(step.params, {**values, "item": item, "index": index}, step=step.id)
        total += len(json.dumps(resolved, ensure_ascii=False, separators=(",", ":")))
        if total > most:
            raise ExpressionError(
                f"the params of its {len(items):,} branches come to more than {limits.describe_bytes(most)} "
                "(CHORDFLOW_MAX_FAN_OUT_BYTES)"
            )
        if time.monotonic() > deadline:
            raise ExpressionError(
                f"the params of its {len(items):,} branches took longer than {seconds:g}s in all "
                "(CHORDFLOW_EXPRESSION_TIMEOUT x (10 + branches / 1000))"
            )
        params.append(resolved)
    return params


def _move(step: StepSpec, values: dict[str, Any], defer_wider_than: int | None = None) -> Move:
    try:
        if step.when is not None and not expressions.evaluate(step.when, values):
            return Move(SKIP, step.id, message="`when` was false")
        items: list = []
        if step.for_each is None:
            params = expressions.evaluate(step.params, values, step=step.id)
        else:
            items = expressions.evaluate(step.for_each, values)
            if not isinstance(items, list):
                raise ExpressionError(f"for_each gave {type(items).__name__}, not a list")
            if len(items) > (widest := limits.limit("CHORDFLOW_MAX_FOR_EACH")):
                raise ExpressionError(
                    f"for_each gave {len(items):,} items, over the limit of {widest:,} (CHORDFLOW_MAX_FOR_EACH)"
                )
            if defer_wider_than is not None and len(items) > defer_wider_than:
                raise _Deferred
            params = _branch_params(step, values, items)
    except ExpressionError as exc:
        return Move(FAIL, step.id, message=str(exc))
    if step.type != STEP_TYPE_ACTION:  # e.g. an approval: waits in the database, holds no worker
        return Move(WAIT, step.id, params=params)
    if step.for_each is None:
        return Move(QUEUE, step.id, params=params)
    if not items:
        return Move(SUCCEED_EMPTY, step.id)
    return Move(FAN_OUT, step.id, params=params, items=items)


def _settle(
    spec: WorkflowSpec,
    statuses: dict[str, str],
    moves: tuple[Move, ...],
    run: RunView,
    outputs: dict[str, Any],
    read_outputs: OutputReader,
) -> Plan:
    """With every step's status known: finish the run, or say whether it waits or runs."""
    outcome = run_outcome(spec, statuses)
    if outcome == R.SUCCEEDED:
        if spec.output is None:
            return Plan(moves, run=R.SUCCEEDED)
        wanted = {s for s in spec.output_reads if statuses.get(s) == S.SUCCEEDED and outputs.get(s) is None}
        outputs = {**outputs, **(read_outputs(wanted) if wanted else {})}
        values = expression_context(
            run_id=run.id, workflow=run.workflow, run_input=run.input, statuses=statuses, outputs=outputs
        )
        try:
            return Plan(moves, run=R.SUCCEEDED, output=expressions.evaluate(spec.output, values))
        except ExpressionError as exc:
            error = error_dict(step="", branch=None, error_type="ExpressionError", message=f"output: {exc}")
            return Plan(moves, run=R.FAILED, error=error)
    if outcome == R.FAILED:
        failed = next((s for s, status in statuses.items() if status in (S.FAILED, S.CANCELLED)), "")
        error = error_dict(step=failed, branch=None, error_type="StepFailed", message=f"step {failed} failed")
        return Plan(moves, run=R.FAILED, error=error)
    if is_waiting(statuses):
        return Plan(moves, run=R.WAITING if run.status != R.WAITING else None)
    if run.status == R.WAITING and set(statuses.values()) & STEP_IN_FLIGHT:
        return Plan(moves, run=R.RUNNING)
    return Plan(moves)
