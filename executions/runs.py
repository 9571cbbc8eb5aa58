"""Writes for whole runs: start, cancel, retry, fail. Each locks the run's row and ends in the advance."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from executions import concurrency, conflicts, events, planning, transitions
from executions.advance import LIGHT_STEP_FIELDS, advance_rows, apply
from executions.dispatch import advance_on_commit
from executions.exceptions import InvalidTransitionError, RunNotAllowedError
from executions.models import Run, StepRun
from executions.planning import RunView
from executions.resolve import lock_run
from executions.states import RunMove, RunStatus, StepStatus
from workflows import graph, limits
from workflows.definition import validate_input
from workflows.models import Workflow
from workflows.services import version_spec

S, R = StepStatus, RunStatus


def run_start(
    *,
    workflow: Workflow,
    input: Any = None,
    idempotency_key: str | None = None,
    started_by: str = "",
    created_by=None,
    schedule=None,
    nominal_time=None,
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
    # Expressions are evaluated here, before any lock is taken: a slow one delays only this start.
    bucket = concurrency.bucket_key(spec, run_input)
    run_id = uuid.uuid4()
    view = RunView(id=run_id, workflow=workflow.slug, input=run_input, status=R.RUNNING)
    inline = limits.limit("CHORDFLOW_START_INLINE_BRANCHES")
    first = planning.plan(
        spec, dict.fromkeys(spec.positions, S.PENDING), run=view, read_outputs=dict, defer_wider_than=inline
    )
    if first.complete and sum(len(move.items) for move in first.moves) > inline:
        first = planning.Plan(complete=False)  # several fan-outs, each narrow enough, too wide together
    try:
        with transaction.atomic(), events.event_batch():
            run = Run.objects.create(
                id=run_id,
                workflow=workflow,
                version=version,
                input=run_input,
                idempotency_key=idempotency_key or None,
                started_by=started_by,
                created_by=created_by,
                schedule=schedule,
                nominal_time=nominal_time,
                concurrency_key=bucket,
            )
            rows = StepRun.objects.bulk_create([StepRun(run=run, step_id=step.id) for step in spec.steps])
            if bucket is not None:
                decision, why = concurrency.admit(run, spec.concurrency)
                if decision == concurrency.QUEUE:  # pending until a run of its bucket ends
                    events.record(run.pk, "run.queued", status=R.PENDING, message=why)
                if decision == concurrency.CANCEL:
                    transitions.run_finish(run_id=run.pk, status=R.CANCELLED, by="concurrency", reason=why)
                if decision != concurrency.START:
                    run.refresh_from_db()
                    return run, True
            transitions.move_run(RunMove.START, run.pk, fields={"started_at": timezone.now()}, version=version.number)
            run.status = R.RUNNING
            if not first.complete:
                # Writing that many branch rows would hold the write lock for seconds: a worker does it.
                advance_on_commit(run.pk)
            else:
                apply(run, spec, {row.step_id: row for row in rows}, first)
    except IntegrityError:
        if not idempotency_key:
            raise
        return Run.objects.get(workflow=workflow, idempotency_key=idempotency_key), False
    run.refresh_from_db()
    return run, True


def run_fail(*, run_id: Any, error: dict) -> None:
    with transaction.atomic(), events.event_batch():
        if lock_run(run_id) is not None:
            transitions.run_finish(run_id=run_id, status=R.FAILED, error=error)


def run_cancel(*, run_id: Any, by: str = "") -> Run:
    """Cancel a pending, running or waiting run. InvalidTransitionError otherwise.

    The cancel locks the run, then its steps; a branch finishing at that moment locks its row, then
    the run. On PostgreSQL one of the two is aborted as a deadlock: the cancel then runs again.
    """

    def cancel() -> Run:
        run = lock_run(run_id)
        if run is None:
            raise Run.DoesNotExist(f"no run {run_id}")
        if not RunMove.CANCEL.allows(run.status):
            raise InvalidTransitionError(
                f"the run is {run.status}: only pending, running or waiting runs can be cancelled"
            )
        transitions.run_finish(run_id=run.pk, status=R.CANCELLED, by=by)
        return run

    run = conflicts.retried(cancel, what=f"cancelling run {run_id}")
    run.refresh_from_db()
    return run


def run_retry(*, run_id: Any, by: str = "") -> Run:
    """Run the failed and cancelled steps of a finished run again, with everything downstream of them.

    Steps that succeeded and are not downstream of a failure keep their outputs and do not run again.
    """
    with transaction.atomic(), events.event_batch():
        run = lock_run(run_id)
        if run is None:
            raise Run.DoesNotExist(f"no run {run_id}")
        if not RunMove.RETRY.allows(run.status):
            raise InvalidTransitionError(f"the run is {run.status}: only failed or cancelled runs can be retried")
        spec = version_spec(run.version)
        top_level = StepRun.objects.filter(run_id=run.pk, branch_index__isnull=True)
        rows = {row.step_id: row for row in top_level.only(*LIGHT_STEP_FIELDS)}
        again = {step_id for step_id, row in rows.items() if row.status in (S.FAILED, S.CANCELLED)}
        again |= graph.descendants(spec.dependencies, again)
        StepRun.objects.filter(run_id=run.pk, parent__step_id__in=again).delete()
        transitions.steps_reset(top_level.filter(step_id__in=again))
        fields = {"error": None, "output": None, "finished_at": None}
        transitions.move_run(RunMove.RETRY, run.pk, fields=fields, retry=True, steps=sorted(again), by=by)
        run.status = R.RUNNING
        advance_rows(run, spec, {row.step_id: row for row in top_level.only(*LIGHT_STEP_FIELDS)})
    run.refresh_from_db()
    return run
