"""Writes for runs: start, advance, fail, cancel, retry. The only code that changes a run's status.

Every status change goes through `_set_run` / `set_steps`, a guarded UPDATE whose WHERE clause
holds the allowed source statuses (states.py): a redelivered message, a late retry or a task that
finishes after a cancel finds zero rows to change, and so changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from executions import events, planning, step_types
from executions.dispatch import DispatchPlan, new_task_id, publish_chord, revoke_on_commit
from executions.exceptions import InvalidTransitionError, RunNotAllowedError
from executions.models import Run, StepRun
from executions.selectors import run_facts
from executions.states import (
    RUN_ACTIVE,
    RUN_SOURCES,
    STEP_IN_FLIGHT,
    STEP_SOURCES,
    RunStatus,
    StepStatus,
)
from workflows import expressions, graph
from workflows.definition import validate_input
from workflows.exceptions import ExpressionError
from workflows.models import Workflow
from workflows.services import version_spec, version_spec_by_id
from workflows.spec import ON_FAILURE_ESCALATE, STEP_TYPE_ACTION, StepSpec, WorkflowSpec

S, R = StepStatus, RunStatus


# --- guarded writes -------------------------------------------------------------------------------
def _set_run(run_id: Any, to: RunStatus, **fields: Any) -> bool:
    return Run.objects.filter(pk=run_id, status__in=RUN_SOURCES[to]).update(status=to, **fields) == 1


def set_steps(queryset: QuerySet, to: StepStatus, **fields: Any) -> int:
    return queryset.filter(status__in=STEP_SOURCES[to]).update(status=to, **fields)


def set_step(step_run_id: int, to: StepStatus, **fields: Any) -> bool:
    return set_steps(StepRun.objects.filter(pk=step_run_id), to, **fields) == 1


def error_dict(*, step: str, branch: int | None, error_type: str, message: str) -> dict:
    return {"step": step, "branch": branch, "type": error_type, "message": message}


# --- start ----------------------------------------------------------------------------------------
def run_start(
    *,
    workflow: Workflow,
    input: Any = None,
    idempotency_key: str | None = None,
    started_by: str = "",
    created_by=None,
) -> tuple[Run, bool]:
    """Start a run of the workflow's current version: (run, created).

    A key already used for this workflow returns that run and created=False, even when two starts
    with the same key arrive at once. Raises InputValidationError (no run is created) when the input
    does not fit the input_schema.
    """
    if not workflow.active:
        raise RunNotAllowedError(f"workflow {workflow.slug!r} is inactive: activate it to start runs")
    version = workflow.latest_version()
    if version is None:
        raise RunNotAllowedError(f"workflow {workflow.slug!r} has no version yet")
    spec = version_spec(version)
    run_input = {} if input is None else input
    validate_input(spec, run_input)
    if idempotency_key:
        existing = Run.objects.filter(workflow=workflow, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic(), events.event_batch():
            now = timezone.now()
            run = Run.objects.create(
                workflow=workflow,
                version=version,
                status=R.RUNNING,
                input=run_input,
                idempotency_key=idempotency_key or None,
                started_by=started_by,
                created_by=created_by,
                started_at=now,
            )
            StepRun.objects.bulk_create([StepRun(run=run, step_id=step.id) for step in spec.steps])
            events.record(run.pk, "run.started", status=R.RUNNING, version=version.number)
            _advance(run, spec)
    except IntegrityError:
        if not idempotency_key:
            raise
        return Run.objects.get(workflow=workflow, idempotency_key=idempotency_key), False
    return run, True


# --- advance --------------------------------------------------------------------------------------
def run_advance(*, run_id: Any) -> None:
    """Start what is ready and finish the run when nothing is left. Idempotent; holds the run's row lock."""
    with transaction.atomic(), events.event_batch():
        advance_locked(run_id)


LIGHT_STEP_FIELDS = ("id", "run_id", "step_id", "status", "attempts")


def advance_locked(run_id: Any, *, succeeded: str | None = None) -> None:
    """run_advance for callers already inside a transaction (a step that just finished).

    One query locks the run's row and reads step statuses; outputs are read only for the steps that
    the ready steps' expressions read, and the definition not at all (its spec is cached). When the
    caller names the step that just `succeeded`, only its neighbourhood is read first: the steps that
    depend on it and what they need. That keeps a long chain from reading every step on every step;
    anything that needs the whole picture (nothing became ready, a step finished at once, the run
    was waiting) falls back to reading every step.
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
        if _advance_neighbourhood(rows[0].run, spec, {row.step_id: row for row in rows}):
            return
    rows = list(steps)
    if not rows or rows[0].run.status not in RUN_ACTIVE:
        return
    _advance(rows[0].run, spec, {row.step_id: row for row in rows})


def _advance_neighbourhood(run: Run, spec: WorkflowSpec, rows: dict[str, StepRun]) -> bool:
    """Start what became ready among `rows`. False when the caller must advance with every step."""
    if run.status != R.RUNNING:
        return False
    ready = planning.ready_steps(spec, {step_id: row.status for step_id, row in rows.items()})
    if not ready:
        return False
    plan = DispatchPlan(run_id=str(run.pk))
    context = _Context(run, rows)
    context.need(set().union(*(spec.step(step_id).reads for step_id in ready)))
    for step_id in ready:
        if not _start_step(run, spec.step(step_id), rows[step_id], context, plan):
            return True  # the step's failure failed the whole run
    plan.join = planning.is_joined(spec, [s for s in ready if rows[s].status == S.QUEUED])
    plan.send_on_commit()
    # A step that was skipped or finished at once may make steps outside the neighbourhood ready.
    return all(rows[step_id].status in (S.QUEUED, S.RUNNING, S.WAITING) for step_id in ready)


def _lock_run(run_id: Any) -> Run | None:
    return Run.objects.select_for_update(of=("self",)).select_related("workflow", "version").filter(pk=run_id).first()


def _top_level(run: Run) -> dict[str, StepRun]:
    rows = StepRun.objects.filter(run_id=run.pk, branch_index__isnull=True).only(*LIGHT_STEP_FIELDS)
    return {row.step_id: row for row in rows}


class _Context:
    """What expressions see, with step outputs read from the database only when an expression needs them."""

    def __init__(self, run: Run, rows: dict[str, StepRun]) -> None:
        self.run = run
        self.loaded: set[str] = set()
        self.values = planning.expression_context(
            run_id=run.pk,
            workflow=run_facts(run.pk).workflow,
            run_input=run.input,
            statuses={step_id: row.status for step_id, row in rows.items()},
            outputs={},
        )

    def need(self, step_ids) -> dict[str, Any]:
        steps = self.values["steps"]
        missing = {s for s in step_ids if s not in self.loaded and steps.get(s, {}).get("status") == S.SUCCEEDED}
        if missing:
            outputs = StepRun.objects.filter(run_id=self.run.pk, branch_index__isnull=True, step_id__in=missing)
            for step_id, output in outputs.values_list("step_id", "output"):
                steps[step_id]["output"] = output
        self.loaded |= missing
        return self.values

    def mark(self, row: StepRun, status: StepStatus, output: Any = None) -> None:
        row.status = status
        self.values["steps"][row.step_id] = {"status": str(status), "output": output}
        self.loaded.add(row.step_id)


def _advance(run: Run, spec: WorkflowSpec, rows: dict[str, StepRun] | None = None) -> None:
    rows = _top_level(run) if rows is None else rows
    plan = DispatchPlan(run_id=str(run.pk))
    context = _Context(run, rows)
    started: list[str] = []
    while True:
        ready = planning.ready_steps(spec, {step_id: row.status for step_id, row in rows.items()})
        if not ready:
            break
        context.need(set().union(*(spec.step(step_id).reads for step_id in ready)))
        for step_id in ready:
            if not _start_step(run, spec.step(step_id), rows[step_id], context, plan):
                return  # the step's failure failed the whole run
            started.append(step_id)
    plan.join = planning.is_joined(spec, [s for s in started if rows[s].status == S.QUEUED])
    plan.send_on_commit()
    _settle(run, spec, rows, context)


def _start_step(run: Run, step: StepSpec, row: StepRun, context: _Context, plan: DispatchPlan) -> bool:
    """Skip, fan out or queue one ready step. False when its failure failed the whole run."""
    now = timezone.now()
    values = context.values
    try:
        if step.when is not None and not expressions.evaluate(step.when, values):
            if set_step(row.pk, S.SKIPPED, finished_at=now):
                events.record(run.pk, "step.skipped", step=step.id, status=S.SKIPPED, message="`when` was false")
            context.mark(row, S.SKIPPED)
            return True
        if step.for_each is None:
            params = expressions.evaluate(step.params, values)
        else:
            items = expressions.evaluate(step.for_each, values)
            if not isinstance(items, list):
                raise ExpressionError(f"for_each gave {type(items).__name__}, not a list")
            params = [
                expressions.evaluate(step.params, {**values, "item": item, "index": index})
                for index, item in enumerate(items)
            ]
    except ExpressionError as exc:
        return _fail_unstarted(run, step, row, context, str(exc))

    if step.type != STEP_TYPE_ACTION:  # e.g. an approval: waits in the database, holds no worker
        if set_step(row.pk, S.WAITING, input=params, queued_at=now, started_at=now):
            events.record(run.pk, "step.waiting", step=step.id, status=S.WAITING)
            step_types.handler_for(step.type)(run=run, step=step, step_run_id=row.pk, params=params)
        row.status = S.WAITING
        return True
    if step.for_each is None:
        attempt = row.attempts + 1
        task_id = new_task_id()
        if set_step(row.pk, S.QUEUED, input=params, queued_at=now, task_id=task_id):
            events.record(run.pk, "step.queued", step=step.id, status=S.QUEUED, attempt=attempt)
            plan.add_step(step_run_id=row.pk, attempt=attempt, step=step, task_id=task_id)
        row.status = S.QUEUED
        return True

    if not items:
        if set_step(row.pk, S.SUCCEEDED, output=[], branch_count=0, queued_at=now, started_at=now, finished_at=now):
            events.record(run.pk, "step.succeeded", step=step.id, status=S.SUCCEEDED, branches=0)
        context.mark(row, S.SUCCEEDED, [])
        return True
    _fan_out(run, step, row, items, params, plan, now)
    context.mark(row, S.RUNNING)
    return True


def _fan_out(run: Run, step: StepSpec, row: StepRun, items: list, params: list, plan: DispatchPlan, now) -> None:
    if not set_step(row.pk, S.RUNNING, branch_count=len(items), branches_done=0, queued_at=now, started_at=now):
        return
    branches = StepRun.objects.bulk_create(
        [
            StepRun(
                run_id=run.pk,
                step_id=step.id,
                parent_id=row.pk,
                branch_index=index,
                status=S.QUEUED,
                input=branch_params,
                item=item,
                queued_at=now,
                task_id=new_task_id(),
                attempt_base=0,
            )
            for index, (item, branch_params) in enumerate(zip(items, params, strict=True))
        ],
        batch_size=500,
    )
    events.record(run.pk, "step.queued", step=step.id, status=S.QUEUED, branches=len(items))
    events.record(run.pk, "step.started", step=step.id, status=S.RUNNING, branches=len(items))
    plan.add_map(row.pk, step, [(branch.pk, branch.task_id) for branch in branches])


def _fail_unstarted(run: Run, step: StepSpec, row: StepRun, context: _Context, message: str) -> bool:
    """A step whose expressions could not be evaluated fails at once, without an attempt."""
    if set_step(row.pk, S.FAILED, error_type="ExpressionError", error_message=message, finished_at=timezone.now()):
        events.record(run.pk, "step.failed", step=step.id, status=S.FAILED, message=message)
    context.mark(row, S.FAILED)
    if step.continues_on_failure:
        return True
    _fail_run(run, error_dict(step=step.id, branch=None, error_type="ExpressionError", message=message))
    return False


def _settle(run: Run, spec: WorkflowSpec, rows: dict[str, StepRun], context: _Context) -> None:
    statuses = {step_id: row.status for step_id, row in rows.items()}
    outcome = planning.run_outcome(spec, statuses)
    now = timezone.now()
    if outcome == R.SUCCEEDED:
        try:
            output = None if spec.output is None else expressions.evaluate(spec.output, context.need(spec.output_reads))
        except ExpressionError as exc:
            _fail_run(run, error_dict(step="", branch=None, error_type="ExpressionError", message=f"output: {exc}"))
            return
        if _set_run(run.pk, R.SUCCEEDED, output=output, finished_at=now):
            events.record(run.pk, "run.succeeded", status=R.SUCCEEDED)
    elif outcome == R.FAILED:
        failed = next((s for s, st in statuses.items() if st in (S.FAILED, S.CANCELLED)), "")
        _fail_run(run, error_dict(step=failed, branch=None, error_type="StepFailed", message=f"step {failed} failed"))
    elif planning.is_waiting(statuses):
        if _set_run(run.pk, R.WAITING):
            events.record(run.pk, "run.waiting", status=R.WAITING)
    elif run.status == R.WAITING and set(statuses.values()) & STEP_IN_FLIGHT:
        if _set_run(run.pk, R.RUNNING):
            events.record(run.pk, "run.started", status=R.RUNNING, resumed=True)


# --- failure, cancel, retry -----------------------------------------------------------------------
def _cancel_unfinished(run_id: Any, *, reason: str) -> None:
    """Cancel every unfinished step and branch of the run and revoke their tasks after commit."""
    unfinished = StepRun.objects.filter(run_id=run_id, status__in=STEP_SOURCES[S.CANCELLED])
    task_ids = list(unfinished.filter(status__in=STEP_IN_FLIGHT).exclude(task_id="").values_list("task_id", flat=True))
    top_level = list(unfinished.filter(branch_index__isnull=True).values_list("step_id", flat=True))
    set_steps(unfinished, S.CANCELLED, finished_at=timezone.now(), next_retry_at=None)
    for step_id in top_level:
        events.record(run_id, "step.cancelled", step=step_id, status=S.CANCELLED, message=reason)
    revoke_on_commit(task_ids)


def _fail_run(run: Run, error: dict) -> None:
    if _set_run(run.pk, R.FAILED, error=error, finished_at=timezone.now()):
        _cancel_unfinished(run.pk, reason=f"the run failed: {error['message']}")
        events.record(run.pk, "run.failed", status=R.FAILED, message=error["message"], error=error)


def run_fail(*, run_id: Any, error: dict) -> None:
    with transaction.atomic(), events.event_batch():
        run = _lock_run(run_id)
        if run is not None:
            _fail_run(run, error)


def run_cancel(*, run_id: Any, by: str = "") -> Run:
    """Cancel a pending, running or waiting run. InvalidTransitionError otherwise."""
    with transaction.atomic(), events.event_batch():
        run = _lock_run(run_id)
        if run is None:
            raise Run.DoesNotExist(f"no run {run_id}")
        if run.status not in RUN_SOURCES[R.CANCELLED]:
            raise InvalidTransitionError(
                f"the run is {run.status}: only pending, running or waiting runs can be cancelled"
            )
        _set_run(run.pk, R.CANCELLED, finished_at=timezone.now())
        _cancel_unfinished(run.pk, reason=f"cancelled by {by}" if by else "cancelled")
        events.record(run.pk, "run.cancelled", status=R.CANCELLED, by=by)
    run.refresh_from_db()
    return run


def run_retry(*, run_id: Any, by: str = "") -> Run:
    """Run the failed and cancelled steps of a finished run again, with everything downstream of them.

    Steps that succeeded and are not downstream of a failure keep their outputs and do not run again.
    """
    with transaction.atomic(), events.event_batch():
        run = _lock_run(run_id)
        if run is None:
            raise Run.DoesNotExist(f"no run {run_id}")
        if run.status not in (R.FAILED, R.CANCELLED):
            raise InvalidTransitionError(f"the run is {run.status}: only failed or cancelled runs can be retried")
        spec = version_spec(run.version)
        rows = _top_level(run)
        again = {step_id for step_id, row in rows.items() if row.status in (S.FAILED, S.CANCELLED)}
        again |= graph.descendants(spec.dependencies, again)
        StepRun.objects.filter(run_id=run.pk, parent__step_id__in=again).delete()
        set_steps(
            StepRun.objects.filter(run_id=run.pk, branch_index__isnull=True, step_id__in=again),
            S.PENDING,
            attempt_base=F("attempts"),
            input=None,
            output=None,
            error_type="",
            error_message="",
            error_traceback="",
            task_id="",
            branch_count=None,
            branches_done=0,
            queued_at=None,
            started_at=None,
            finished_at=None,
            next_retry_at=None,
        )
        _set_run(run.pk, R.RUNNING, error=None, output=None, finished_at=None)
        events.record(run.pk, "run.started", status=R.RUNNING, retry=True, steps=sorted(again), by=by)
        run.status = R.RUNNING
        _advance(run, spec)
    run.refresh_from_db()
    return run


# --- steps that finish outside a task (approvals, escalations) ------------------------------------
def step_give_up(
    *,
    run_id: Any,
    step: StepSpec,
    step_run_id: int,
    error: dict,
    traceback: str = "",
    queryset: QuerySet | None = None,
    allow_escalation: bool = True,
    attempt: int | None = None,
) -> bool:
    """Record that a step failed for good, then do what its on_failure says: escalate, go on, or fail the run.

    Inside a transaction and an event batch. Escalation needs a handler (the approvals app): the
    step then waits for an operator instead of failing. False when the step was not in a state to fail.
    """
    rows = queryset if queryset is not None else StepRun.objects.filter(pk=step_run_id)
    fields = {"error_type": error["type"], "error_message": error["message"], "error_traceback": traceback}
    message = f"{error['type']}: {error['message']}"
    escalate = step_types.escalation_handler() if allow_escalation and step.on_failure == ON_FAILURE_ESCALATE else None
    if escalate is not None:
        if not set_steps(rows, S.WAITING, next_retry_at=None, **fields):
            return False
        events.record(run_id, "step.waiting", step=step.id, status=S.WAITING, message=f"escalated: {message}")
        escalate(run_id=run_id, step=step, step_run_id=step_run_id, error_type=error["type"], message=error["message"])
        advance_locked(run_id)
        return True
    if not set_steps(rows, S.FAILED, finished_at=timezone.now(), next_retry_at=None, **fields):
        return False
    events.record(run_id, "step.failed", step=step.id, status=S.FAILED, attempt=attempt, message=message)
    if step.continues_on_failure:
        advance_locked(run_id)
    else:
        run = _lock_run(run_id)
        if run is not None:
            _fail_run(run, error)
    return True


def step_resolve(
    *,
    step_run_id: int,
    outcome: str,
    output: Any = None,
    error_type: str = "",
    message: str = "",
    by: str = "",
    escalate: bool = True,
) -> bool:
    """Finish a `waiting` step from outside: succeed, fail, skip, or retry with fresh attempts.

    A failure escalates when the step says so and `escalate` is true (not for an operator's own "fail").

    False when the step is no longer waiting (the run was cancelled, or another decision won).
    """
    with transaction.atomic(), events.event_batch():
        row = StepRun.objects.select_related("run__version").filter(pk=step_run_id).first()
        if row is None:
            return False
        waiting = StepRun.objects.filter(pk=step_run_id, status=S.WAITING)
        step = version_spec(row.run.version).step(row.step_id)
        now = timezone.now()
        run_id = row.run_id
        if outcome == "succeed":
            if not set_steps(waiting, S.SUCCEEDED, output=output, finished_at=now, error_type="", error_message=""):
                return False
            events.record(run_id, "step.succeeded", step=step.id, status=S.SUCCEEDED, by=by)
            advance_locked(run_id)
        elif outcome == "skip":
            if not set_steps(waiting, S.SKIPPED, finished_at=now):
                return False
            events.record(run_id, "step.skipped", step=step.id, status=S.SKIPPED, message=message, by=by)
            advance_locked(run_id)
        elif outcome == "fail":
            error = error_dict(step=step.id, branch=None, error_type=error_type, message=message)
            given_up = step_give_up(
                run_id=run_id, step=step, step_run_id=row.pk, error=error, queryset=waiting, allow_escalation=escalate
            )
            if not given_up:
                return False
        elif outcome == "retry":
            task_id = new_task_id()
            attempt = row.attempts + 1
            if not set_steps(
                waiting, S.QUEUED, attempt_base=F("attempts"), queued_at=now, task_id=task_id, finished_at=None
            ):
                return False
            events.record(run_id, "step.queued", step=step.id, status=S.QUEUED, attempt=attempt, by=by)
            plan = DispatchPlan(run_id=str(run_id))
            plan.add_step(step_run_id=row.pk, attempt=attempt, step=step, task_id=task_id)
            plan.send_on_commit()
            advance_locked(run_id)
        else:
            raise ValueError(f"unknown outcome {outcome!r}: succeed, fail, skip or retry")
    return True


def fan_out_publish(*, parent_id: int) -> int:
    """Publish the chord of a fan-out too wide to publish in the transaction's caller. Returns the width.

    Only branches still queued for their first attempt are published: run twice, the second
    publish finds them claimed and its messages do nothing.
    """
    parent = StepRun.objects.filter(pk=parent_id).values("run_id", "step_id", "status").first()
    if parent is None or parent["status"] != S.RUNNING:
        return 0
    facts = run_facts(parent["run_id"])
    step = version_spec_by_id(facts.version_id, facts.content_hash).step(parent["step_id"])
    branches = list(
        StepRun.objects.filter(parent_id=parent_id, status=S.QUEUED, attempts=0)
        .order_by("branch_index")
        .values_list("pk", "task_id")
    )
    if branches:
        publish_chord(parent_id=parent_id, step=step, branches=branches)
    return len(branches)
