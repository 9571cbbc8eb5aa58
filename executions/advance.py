"""The advance: lock the run, plan from its step statuses, apply the moves, settle the run's status.

The one advance loop every path uses: a start, a step that finished, a decision, a chord callback,
the sweep. It is idempotent: run twice, the second finds nothing ready and nothing to settle.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from executions import continuation, events, planning, step_types, transitions
from executions.dispatch import DispatchPlan, fan_out_chunk, new_task_id
from executions.models import Run, StepRun
from executions.planning import Plan, RunView
from executions.selectors import run_facts
from executions.states import RUN_ACTIVE, RunMove, RunStatus, StepMove, StepStatus
from workflows.services import version_spec_by_id
from workflows.spec import StepSpec, WorkflowSpec

S, R = StepStatus, RunStatus
LIGHT_STEP_FIELDS = ("id", "run_id", "step_id", "status", "attempts")


def run_advance(*, run_id: Any) -> None:
    """Start what is ready and finish the run when nothing is left. Idempotent; holds the run's row lock."""
    with transaction.atomic(), events.event_batch():
        advance_locked(run_id)


def advance_locked(run_id: Any, *, succeeded: str | None = None) -> None:
    """run_advance for callers already inside a transaction (a step that just finished).

    One query locks the run's row and reads step statuses; outputs are read only for the steps that
    expressions read, and the definition not at all (its spec is cached). When the caller names the
    step that just `succeeded`, only its neighbourhood is read and planned first: the steps that
    depend on it and what they need. That keeps a long chain from reading every step on every step;
    a plan the neighbourhood cannot decide is made again from every step.
    """
    facts = run_facts(run_id)
    spec = version_spec_by_id(facts.version_id, facts.content_hash)
    steps = (
        StepRun.objects.filter(run_id=run_id, branch_index__isnull=True)
        .select_related("run")
        .select_for_update(of=("run",))
        .only(*LIGHT_STEP_FIELDS, "run__status", "run__input", "run__version_id", "run__workflow_id")
    )
    if succeeded is not None and spec.neighbourhood.get(succeeded):
        rows = list(steps.filter(step_id__in=spec.neighbourhood[succeeded]))
        if not rows or rows[0].run.status not in RUN_ACTIVE:
            return
        if _advance(rows[0].run, spec, {row.step_id: row for row in rows}, partial=True):
            return
    rows = list(steps)
    if rows and rows[0].run.status in RUN_ACTIVE:
        _advance(rows[0].run, spec, {row.step_id: row for row in rows}, partial=False)


def advance_rows(run: Run, spec: WorkflowSpec, rows: dict[str, StepRun]) -> None:
    """Plan and apply with every top-level step of a run whose row lock the caller holds."""
    _advance(run, spec, rows, partial=False)


def _advance(run: Run, spec: WorkflowSpec, rows: dict[str, StepRun], *, partial: bool) -> bool:
    """False when a partial plan could not decide: the caller plans again with every step."""
    plan = _plan(run, spec, rows, partial=partial)
    if plan.complete:
        apply(run, spec, rows, plan)
    return plan.complete


def _plan(run: Run, spec: WorkflowSpec, rows: dict[str, StepRun], *, partial: bool) -> Plan:
    view = RunView(id=run.pk, workflow=run_facts(run.pk).workflow, input=run.input, status=run.status)

    def read_outputs(step_ids: set[str]) -> dict[str, Any]:
        found = StepRun.objects.filter(run_id=run.pk, branch_index__isnull=True, step_id__in=step_ids)
        return dict(found.values_list("step_id", "output"))

    statuses = {step_id: row.status for step_id, row in rows.items()}
    return planning.plan(spec, statuses, run=view, read_outputs=read_outputs, partial=partial)


def apply(run: Run, spec: WorkflowSpec, rows: dict[str, StepRun], plan: Plan) -> None:
    """Make the plan's moves through the gate, publish what they queued after commit, settle the run."""
    dispatch = DispatchPlan(run_id=str(run.pk))
    now = timezone.now()
    queued: list[str] = []
    for move in plan.moves:
        row, step = rows[move.step], spec.step(move.step)
        if _apply_move(run, step, row, move, dispatch, now) and move.kind == planning.QUEUE:
            queued.append(step.id)
        row.status = planning.MOVE_STATUS[move.kind]
    if plan.run == R.FAILED:  # nothing it queued will run: run_finish cancels it
        transitions.run_finish(run_id=run.pk, status=R.FAILED, error=plan.error)
        return
    dispatch.join = planning.is_joined(spec, queued)
    taken = continuation.claim_next(dispatch.ready, now)
    if taken is not None:
        dispatch.drop_step(taken)
    dispatch.send_on_commit()
    if plan.run == R.SUCCEEDED:
        transitions.run_finish(run_id=run.pk, status=R.SUCCEEDED, output=plan.output)
    elif plan.run == R.WAITING:
        transitions.move_run(RunMove.WAIT, run.pk)
    elif plan.run == R.RUNNING:
        transitions.move_run(RunMove.RESUME, run.pk, resumed=True)


def _apply_move(run: Run, step: StepSpec, row: StepRun, move: planning.Move, dispatch: DispatchPlan, now) -> bool:
    key = {"run_id": run.pk, "step": step.id}
    if move.kind == planning.SKIP:
        return transitions.move_step(StepMove.SKIP, row.pk, **key, message=move.message, fields={"finished_at": now})
    if move.kind == planning.FAIL:
        fields = {"error_type": "ExpressionError", "error_message": move.message, "finished_at": now}
        return transitions.move_step(StepMove.FAIL_UNSTARTED, row.pk, **key, message=move.message, fields=fields)
    if move.kind == planning.WAIT:
        fields = {"input": move.params, "queued_at": now, "started_at": now}
        if not transitions.move_step(StepMove.WAIT, row.pk, **key, fields=fields):
            return False
        step_types.handler_for(step.type)(run=run, step=step, step_run_id=row.pk, params=move.params)
        return True
    if move.kind == planning.QUEUE:
        attempt, task_id = row.attempts + 1, new_task_id()
        fields = {"input": move.params, "queued_at": now, "task_id": task_id}
        if not transitions.move_step(StepMove.QUEUE, row.pk, **key, fields=fields, attempt=attempt):
            return False
        dispatch.add_step(step_run_id=row.pk, attempt=attempt, step=step, task_id=task_id)
        return True
    if move.kind == planning.SUCCEED_EMPTY:
        fields = {"output": [], "branch_count": 0, "queued_at": now, "started_at": now, "finished_at": now}
        return transitions.move_step(StepMove.SUCCEED_EMPTY, row.pk, **key, fields=fields, branches=0)
    return _fan_out(run, step, row, move, dispatch, now)


def _fan_out(run: Run, step: StepSpec, row: StepRun, move: planning.Move, dispatch: DispatchPlan, now) -> bool:
    branches = transitions.step_fan_out(
        step_run_id=row.pk, run_id=run.pk, step=step.id, items=move.items, params=move.params, now=now,
        chunk=fan_out_chunk(len(move.items), step),
    )  # fmt: skip
    if branches is None:
        return False
    dispatch.add_map(row.pk, step, branches)
    return True
