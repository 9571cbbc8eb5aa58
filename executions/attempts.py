"""One attempt of one step: claim it, call the action, record success, retry or failure, join branches."""

from __future__ import annotations

import json
import logging
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from executions import events, services, sql
from executions.dispatch import revoke_on_commit
from executions.models import StepRun
from executions.selectors import run_facts
from executions.services import S, error_dict, set_step
from executions.states import STEP_SOURCES
from workflows.actions import ActionContext, get_action
from workflows.exceptions import PermanentError, RetryableError
from workflows.services import version_spec_by_id
from workflows.spec import StepSpec

logger = logging.getLogger(__name__)

TRACEBACK_LIMIT = 4000


@dataclass(frozen=True)
class Failure:
    type: str
    message: str
    retryable: bool
    traceback: str = ""
    retry_after: float | None = None


def step_claim(*, step_run_id: int, attempt: int) -> StepRun | None:
    """Move attempt `attempt` from queued/retrying to running. None when it was already claimed or is moot."""
    with transaction.atomic(), events.event_batch():
        row = sql.claim(step_run_id=step_run_id, attempt=attempt, now=timezone.now())
        if row is None:
            return None
        events.record(
            row.run_id, "step.started", step=row.step_id, branch=row.branch_index, status=S.RUNNING, attempt=attempt
        )
    return row


def step_execute(*, step_run_id: int, attempt: int) -> float | None:
    """Run one attempt. Returns the countdown for the next attempt when the caller should schedule it."""
    row = step_claim(step_run_id=step_run_id, attempt=attempt)
    if row is None:
        logger.info(
            "step run %s attempt %s: already claimed or no longer runnable; nothing to do", step_run_id, attempt
        )
        return None
    facts = run_facts(row.run_id)
    step = version_spec_by_id(facts.version_id, facts.content_hash).step(row.step_id)
    context = ActionContext(
        run_id=str(row.run_id),
        workflow=facts.workflow,
        step_id=row.step_id,
        attempt=attempt,
        branch_index=row.branch_index,
        item=row.item,
    )
    try:
        output = get_action(step.action)(row.input, context)
        _check_json(output)
    except SoftTimeLimitExceeded:
        failure = Failure("TimeoutError", f"attempt {attempt} ran past the step's timeout of {step.timeout:g}s", True)
    except PermanentError as exc:
        failure = Failure(type(exc).__name__, str(exc), False)
    except RetryableError as exc:
        failure = Failure(type(exc).__name__, str(exc), True, retry_after=exc.retry_after)
    except Exception as exc:  # any other error of an action is retryable
        failure = Failure(type(exc).__name__, str(exc), True, traceback.format_exc()[-TRACEBACK_LIMIT:])
    else:
        step_succeed(row=row, output=output)
        return None
    return attempt_failed(row=row, step=step, failure=failure)


def _check_json(output: Any) -> None:
    try:
        json.dumps(output)
    except (TypeError, ValueError) as exc:
        raise PermanentError(f"the action's output is not JSON-serializable: {exc}") from None


def step_succeed(*, row: StepRun, output: Any) -> None:
    with transaction.atomic(), events.event_batch():
        if not set_step(row.pk, S.SUCCEEDED, output=output, finished_at=timezone.now(), **_NO_ERROR):
            return  # cancelled meanwhile, or a duplicate: nothing changes
        events.record(
            row.run_id,
            "step.succeeded",
            step=row.step_id,
            branch=row.branch_index,
            status=S.SUCCEEDED,
            attempt=row.attempts,
        )
        if row.parent_id is None:
            services.advance_locked(row.run_id, succeeded=row.step_id)
        else:
            _branch_finished(row.parent_id)


_NO_ERROR = {"error_type": "", "error_message": "", "error_traceback": "", "next_retry_at": None}


def attempt_failed(*, row: StepRun, step: StepSpec, failure: Failure) -> float | None:
    """Record a failed attempt: retrying (returns the delay to schedule, or None when parked) or failed."""
    used = row.attempts - row.attempt_base
    if not failure.retryable or used >= step.retry.max_attempts:
        step_fail(row=row, step=step, failure=failure)
        return None
    delay = step.retry.delay(used)
    if failure.retry_after is not None:
        delay = max(delay, failure.retry_after)
    parked = delay > settings.CHORDFLOW_MAX_COUNTDOWN  # too long for a countdown: the sweeper fires it
    with transaction.atomic(), events.event_batch():
        if not set_step(
            row.pk,
            S.RETRYING,
            next_retry_at=timezone.now() + timedelta(seconds=delay),
            error_type=failure.type,
            error_message=failure.message,
            error_traceback=failure.traceback,
            **({"task_id": ""} if parked else {}),
        ):
            return None
        events.record(
            row.run_id,
            "step.retrying",
            step=row.step_id,
            branch=row.branch_index,
            status=S.RETRYING,
            attempt=row.attempts,
            delay=round(delay, 3),
            message=f"{failure.type}: {failure.message}",
        )
    return None if parked else delay


def step_fail(*, row: StepRun, step: StepSpec, failure: Failure) -> None:
    """The step (or branch) has failed for good; its on_failure decides what the run does."""
    error = error_dict(step=row.step_id, branch=row.branch_index, error_type=failure.type, message=failure.message)
    with transaction.atomic(), events.event_batch():
        if row.parent_id is None:
            services.step_give_up(
                run_id=row.run_id,
                step=step,
                step_run_id=row.pk,
                error=error,
                traceback=failure.traceback,
                attempt=row.attempts,
            )
            return
        fields = {"error_type": failure.type, "error_message": failure.message, "error_traceback": failure.traceback}
        if not set_step(row.pk, S.FAILED, finished_at=timezone.now(), next_retry_at=None, **fields):
            return
        events.record(
            row.run_id, "step.failed", step=row.step_id, branch=row.branch_index, status=S.FAILED,
            attempt=row.attempts, message=f"{failure.type}: {failure.message}",
        )  # fmt: skip
        sql.count_branch(row.parent_id)
        if not _fail_parent(row, failure):
            return
        if step.continues_on_failure:
            services.advance_locked(row.run_id)
        else:
            services.run_fail(run_id=row.run_id, error=error)


def _fail_parent(branch: StepRun, failure: Failure) -> bool:
    """A failed branch fails its for_each step and cancels its other branches. False if already done."""
    message = f"branch {branch.branch_index} failed: {failure.type}: {failure.message}"
    if not set_step(
        branch.parent_id, S.FAILED, finished_at=timezone.now(), error_type=failure.type, error_message=message
    ):
        return False
    events.record(branch.run_id, "step.failed", step=branch.step_id, status=S.FAILED, message=message)
    siblings = StepRun.objects.filter(parent_id=branch.parent_id, status__in=STEP_SOURCES[S.CANCELLED])
    task_ids = list(siblings.exclude(task_id="").values_list("task_id", flat=True))
    services.set_steps(siblings, S.CANCELLED, finished_at=timezone.now())
    revoke_on_commit(task_ids)
    return True


def _branch_finished(parent_id: int) -> None:
    """Count one finished branch on its parent; the branch that completes the count joins them."""
    done, count, status = sql.count_branch(parent_id)
    if done >= (count or 0) and status == S.RUNNING:
        _join(parent_id)


def step_join(*, parent_id: int) -> None:
    """Finish a for_each step whose branches are all done. Idempotent: the chord callback, the last
    branch and the sweeper may all call it."""
    with transaction.atomic(), events.event_batch():
        _join(parent_id)


def _join(parent_id: int) -> None:
    """Inside a transaction: the step's output is its branches' outputs, in item order, gathered once."""
    parent = (
        StepRun.objects.filter(pk=parent_id)
        .values("status", "branches_done", "branch_count", "run_id", "step_id")
        .first()
    )
    if parent is None or parent["status"] != S.RUNNING or parent["branches_done"] < (parent["branch_count"] or 0):
        return
    outputs = list(
        StepRun.objects.filter(parent_id=parent_id).order_by("branch_index").values_list("output", flat=True)
    )
    if not set_step(parent_id, S.SUCCEEDED, output=outputs, finished_at=timezone.now()):
        return
    events.record(parent["run_id"], "step.succeeded", step=parent["step_id"], status=S.SUCCEEDED, branches=len(outputs))
    services.advance_locked(parent["run_id"], succeeded=parent["step_id"])
