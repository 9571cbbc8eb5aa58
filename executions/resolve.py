"""A step that ends for good (its last attempt failed, a person decided): escalate, go on, or fail the run."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from executions import events, step_types, transitions
from executions.advance import advance_locked
from executions.dispatch import DispatchPlan, new_task_id
from executions.models import Run, StepRun
from executions.planning import error_dict
from executions.states import RunStatus, StepMove, Transition
from workflows.services import version_spec
from workflows.spec import ON_FAILURE_ESCALATE, StepSpec


def lock_run(run_id: Any) -> Run | None:
    return Run.objects.select_for_update(of=("self",)).select_related("workflow", "version").filter(pk=run_id).first()


def step_give_up(
    *,
    run_id: Any,
    step: StepSpec,
    step_run_id: int,
    error: dict,
    move: Transition = StepMove.FAIL,
    traceback: str = "",
    allow_escalation: bool = True,
    attempt: int | None = None,
    summary: str | None = None,
    duration: float | None = None,
) -> bool:
    """Record that a step failed for good (by `move`), then do what its on_failure says: escalate, go on,
    or fail the run with `error`. A for_each step whose branch failed ends here too.

    Inside a transaction and an event batch. Escalation needs a handler (the approvals app): the
    step then waits for an operator instead of failing. False when the step was not in a state to fail.
    """
    fields = {"error_type": error["type"], "error_message": summary or error["message"], "error_traceback": traceback}
    message = summary or f"{error['type']}: {error['message']}"
    key = {"run_id": run_id, "step": step.id}
    if attempt is not None:  # an attempt's own failure: only while its row still runs that attempt
        key["of_attempt"] = attempt
    timed = {"duration": duration} if duration is not None else {}  # the attempt's, for the metrics
    known = {"attempt": attempt, **timed} if attempt is not None else {}
    escalate = step_types.escalation_handler() if allow_escalation and step.on_failure == ON_FAILURE_ESCALATE else None
    if escalate is not None:
        fields["next_retry_at"] = None
        if not transitions.move_step(
            StepMove.ESCALATE,
            step_run_id,
            **key,
            message=f"escalated: {message}",
            fields=fields,
            escalated=True,
            **known,
        ):
            return False
        escalate(run_id=run_id, step=step, step_run_id=step_run_id, error_type=error["type"], message=error["message"])
        advance_locked(run_id)
        return True
    fields.update(finished_at=timezone.now(), next_retry_at=None)
    if not transitions.move_step(move, step_run_id, **key, message=message, fields=fields, **known):
        return False
    if step.continues_on_failure:
        advance_locked(run_id)
    elif lock_run(run_id) is not None:
        transitions.run_finish(run_id=run_id, status=RunStatus.FAILED, error=error)
    return True


OUTCOMES = ("succeed", "fail", "skip", "retry")


def step_resolve(
    *,
    step_run_id: int,
    outcome: str,
    output: Any = None,
    error_type: str = "",
    message: str = "",
    by: str = "",
) -> bool:
    """Finish a `waiting` step from outside: succeed, fail, skip, or retry with fresh attempts.

    A failure never escalates: people decided it already (a rejection, an operator's "fail"); the
    step's on_failure then continues or fails the run. False when the step is no longer waiting
    (the run was cancelled, or another decision won).
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}: succeed, fail, skip or retry")
    with transaction.atomic(), events.event_batch():
        row = StepRun.objects.select_related("run__version").filter(pk=step_run_id).first()
        if row is None:
            return False
        step = version_spec(row.run.version).step(row.step_id)
        now = timezone.now()
        key = {"run_id": row.run_id, "step": step.id, "by": by}
        if outcome == "fail":
            error = error_dict(step=step.id, branch=None, error_type=error_type, message=message)
            return step_give_up(
                run_id=row.run_id, step=step, step_run_id=row.pk, error=error, move=StepMove.RESOLVE_FAIL,
                allow_escalation=False,
            )  # fmt: skip
        if outcome == "succeed":
            fields = {"output": output, "finished_at": now, "error_type": "", "error_message": ""}
            if not transitions.move_step(StepMove.RESOLVE_SUCCEED, row.pk, **key, fields=fields):
                return False
        elif outcome == "skip":
            fields = {"finished_at": now}
            if not transitions.move_step(StepMove.RESOLVE_SKIP, row.pk, **key, message=message, fields=fields):
                return False
        else:  # retry: a fresh set of attempts
            task_id, attempt = new_task_id(), row.attempts + 1
            fields = {"attempt_base": F("attempts"), "queued_at": now, "task_id": task_id, "finished_at": None}
            if not transitions.move_step(StepMove.RESOLVE_RETRY, row.pk, **key, fields=fields, attempt=attempt):
                return False
            dispatch = DispatchPlan(run_id=str(row.run_id))
            dispatch.add_step(step_run_id=row.pk, attempt=attempt, step=step, task_id=task_id)
            dispatch.send_on_commit()
        advance_locked(row.run_id)
    return True
