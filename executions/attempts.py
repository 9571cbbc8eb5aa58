"""One attempt of one step: claim it, call the action, record success, retry or failure, join branches."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar

from billiard.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config import logfilters
from executions import cancellation, conflicts, continuation, events, steplogs, timelimits, transitions
from executions.advance import advance_locked
from executions.branches import branch_failed, branch_finished
from executions.dispatch import new_task_id, step_signature
from executions.models import StepRun
from executions.planning import error_dict
from executions.resolve import step_give_up
from executions.selectors import run_facts
from executions.states import StepMove
from workflows import limits, secrets
from workflows.action_log import LogLevel
from workflows.actions import ActionContext, get_action
from workflows.exceptions import AttemptCancelled, PermanentError, RetryableError
from workflows.services import version_spec_by_id
from workflows.spec import StepSpec

logger = logging.getLogger(__name__)

TRACEBACK_LIMIT = 4000
RECORD_TRIES = 5
T = TypeVar("T")


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
        return transitions.step_claim(step_run_id=step_run_id, attempt=attempt, now=timezone.now())


def step_execute(*, step_run_id: int, attempt: int) -> float | None:
    """Run one attempt. Returns the countdown for the next attempt when the caller should schedule it."""
    row = step_claim(step_run_id=step_run_id, attempt=attempt)
    if row is None:
        logger.info(
            "step run %s attempt %s: already claimed or no longer runnable; nothing to do", step_run_id, attempt
        )
        return None
    with logfilters.attempt_scope(run_id=row.run_id, step_id=row.step_id, branch=row.branch_index, attempt=attempt):
        return _execute(row, attempt)


def continue_chain(offer: continuation.Offer | None) -> int:
    """Run the steps that advances claimed for this task, one after another (executions.continuation).
    Returns how many ran."""
    count = 0
    while (taken := continuation.take(offer)) is not None:
        row, step = taken
        outcome = attempt_in_task(row, step=step, workflow=run_facts(row.run_id).workflow)
        if outcome.stopped:
            outcome.write_log()
        elif outcome.failure is None:
            step_succeed(row=row, output=outcome.output, write_log=outcome.write_log)  # may claim the next
        else:
            failed_in_task(row, step=step, outcome=outcome)
        count += 1
    return count


def _execute(row: StepRun, attempt: int) -> float | None:
    facts = run_facts(row.run_id)
    step = version_spec_by_id(facts.version_id, facts.content_hash).step(row.step_id)
    outcome = _limited_run(row, step=step, workflow=facts.workflow)
    if outcome.stopped:
        outcome.write_log()
        return None
    if outcome.failure is None:
        step_succeed(row=row, output=outcome.output, write_log=outcome.write_log)
        return None
    return attempt_failed(row=row, step=step, failure=outcome.failure, write_log=outcome.write_log)


@dataclass
class Outcome:
    """What one attempt's action did, before it is recorded: an output, a failure, or a stop after its
    cancel (nothing to record). `write_log` writes the attempt's last log lines."""

    write_log: Callable[[], None]
    output: Any = None
    failure: Failure | None = None
    stopped: bool = False


def attempt_run(row: StepRun, *, step: StepSpec, workflow: str, attempt: int) -> Outcome:
    """Call the action of a claimed attempt and say what happened; records nothing."""
    revealed: dict[str, str] = {}  # secret name -> value, redacted from whatever the attempt leaves
    log = steplogs.attempt_log(
        run_id=row.run_id, step_id=row.step_id, branch=row.branch_index, attempt=attempt,
        redact=lambda value: secrets.redact(value, revealed),
    )  # fmt: skip
    context = ActionContext(
        run_id=str(row.run_id),
        workflow=workflow,
        step_id=row.step_id,
        attempt=attempt,
        branch_index=row.branch_index,
        item=row.item,
        cancel_probe=cancellation.AttemptProbe(run_id=row.run_id, step_run_id=row.pk, attempt=attempt),
        log=log,
    )
    try:
        params = secrets.reveal(
            row.input, template=step.params, run_id=context.run_id, step_id=row.step_id, allowed=step.secrets,
            revealed=revealed,
        )  # fmt: skip
        output = secrets.redact(get_action(step.action)(params, context), revealed)
        _check_json(output)
    except SoftTimeLimitExceeded:
        failure = _timed_out(step, attempt)
    except AttemptCancelled as exc:
        if context.cancelled():  # the cancel ended this attempt's row already: nothing to record
            logger.info("step run %s attempt %s stopped after its cancel", row.pk, attempt)
            log.log(LogLevel.INFO, "stopped: the step was cancelled (%s)", exc, engine=True)
            return Outcome(steplogs.writer(log), stopped=True)
        failure = Failure(type(exc).__name__, str(exc), False)  # raised without a cancel: a plain failure
    except PermanentError as exc:
        failure = Failure(type(exc).__name__, str(exc), False)
    except RetryableError as exc:
        failure = Failure(type(exc).__name__, str(exc), True, retry_after=exc.retry_after)
    except Exception as exc:  # any other error of an action is retryable
        failure = Failure(type(exc).__name__, str(exc), True, traceback.format_exc())
    else:
        return Outcome(steplogs.writer(log), output=output)
    # secrets out first, then the cut: a value straddling the cut would leave a piece behind
    failure = replace(
        failure,
        message=secrets.redact(failure.message, revealed),
        traceback=secrets.redact(failure.traceback, revealed)[-TRACEBACK_LIMIT:],
    )
    steplogs.failure_line(
        log, error_type=failure.type, message=failure.message, traceback=failure.traceback,
        retryable=failure.retryable,
    )  # fmt: skip
    return Outcome(steplogs.writer(log), failure=failure)


def _timed_out(step: StepSpec, attempt: int) -> Failure:
    return Failure("TimeoutError", f"attempt {attempt} ran past the step's timeout of {step.timeout:g}s", True)


def _limited_run(row: StepRun, *, step: StepSpec, workflow: str) -> Outcome:
    """attempt_run under its step's time limits, kept in the process (executions.timelimits): a task
    may run more than its first attempt (a chunk's branches, a chain's next steps)."""
    hard = step.timeout + settings.CHORDFLOW_HARD_TIME_LIMIT_GRACE
    try:
        with timelimits.time_limits(step.timeout, hard):
            return attempt_run(row, step=step, workflow=workflow, attempt=row.attempts)
    except SoftTimeLimitExceeded:  # the limit struck just as the action returned
        return Outcome(lambda: None, failure=_timed_out(step, row.attempts))


def attempt_in_task(row: StepRun, *, step: StepSpec, workflow: str) -> Outcome:
    """Run a claimed attempt inside a task begun for another one, in its own logging scope."""
    scope = logfilters.attempt_scope(
        run_id=row.run_id, step_id=row.step_id, branch=row.branch_index, attempt=row.attempts
    )
    with scope:
        return _limited_run(row, step=step, workflow=workflow)


def failed_in_task(row: StepRun, *, step: StepSpec, outcome: Outcome) -> bool:
    """Record the failure of an attempt run by attempt_in_task: its retry travels alone, in a task of
    its own. True when no retry was published (it failed for good, or waits parked for the sweep)."""
    next_task_id = new_task_id()
    countdown = attempt_failed(
        row=row, step=step, failure=outcome.failure, write_log=outcome.write_log, next_task_id=next_task_id
    )
    if countdown is None:
        return True
    signature = step_signature(
        step_run_id=row.pk, attempt=row.attempts + 1, step=step, task_id=next_task_id, run_id=row.run_id,
        branch=row.branch_index,
    )  # fmt: skip
    try:
        signature.apply_async(countdown=countdown, ignore_result=True)
    except Exception:
        logger.exception("could not publish the retry of step run %s; the sweeper will", row.pk)
    return False


def _check_json(output: Any) -> None:
    """An output the database or a client cannot hold fails the attempt for good, saying why."""
    try:
        limits.check_storable(
            output, max_bytes=limits.limit("CHORDFLOW_MAX_OUTPUT_BYTES"), what="the action's output",
            setting="CHORDFLOW_MAX_OUTPUT_BYTES",
        )  # fmt: skip
    except limits.UnstorableValue as exc:
        raise PermanentError(str(exc)) from None


def recorded(record: Callable[[], T]) -> T:
    """Run `record` in one transaction and event batch; on a deadlock (or SQLite's lock timeout) run it again.

    An attempt's outcome is written after its claim committed. Rolled back and left to Celery's
    retry, it would be lost: the redelivered task finds the attempt claimed and does nothing. On
    PostgreSQL a branch that fails (locking its step, then its siblings) and a sibling that succeeds
    (locking itself, then the step) can deadlock; the database aborts one, which runs again here.
    """
    return conflicts.retried(record, what="recording an attempt's outcome", tries=RECORD_TRIES)


def logged(write_log: Callable[[], None] | None, record: Callable[[], T]) -> Callable[[], T]:
    """`record`, then the attempt's last log lines, in its transaction: a finished step's log is
    complete, and an attempt that logged nothing costs no statement.

    The lines go after the outcome, so its row locks are taken first: on PostgreSQL the lines' foreign
    key takes a share lock on the run's row, which the advance then locks FOR UPDATE, and two steps of
    one run finishing together would deadlock. A writer marked `only_if_moved` (the sweep's line for a
    lost attempt) writes only when the move happened: a refused one changed nothing to explain.
    """
    if write_log is None:
        return record

    def both() -> T:
        result = record()
        if result is not False or not getattr(write_log, "only_if_moved", False):
            write_log()
        return result

    return both


def step_succeed(*, row: StepRun, output: Any, write_log: Callable[[], None] | None = None) -> None:
    recorded(logged(write_log, lambda: _succeed(row, output)))


def _succeed(row: StepRun, output: Any) -> bool:
    now = timezone.now()
    fields = {"output": output, "finished_at": now, **_NO_ERROR}
    if not transitions.move_step(
        StepMove.SUCCEED, row.pk, run_id=row.run_id, step=row.step_id, branch=row.branch_index, fields=fields,
        attempt=row.attempts, of_attempt=row.attempts, duration=transitions.attempt_duration(row, now),
    ):  # fmt: skip
        return False  # cancelled meanwhile, a duplicate, or a newer attempt owns the row: nothing changes
    if row.parent_id is None:
        advance_locked(row.run_id, succeeded=row.step_id)
    else:
        branch_finished(row.parent_id)
    return True


_NO_ERROR = {"error_type": "", "error_message": "", "error_traceback": "", "next_retry_at": None}


def attempt_failed(
    *,
    row: StepRun,
    step: StepSpec,
    failure: Failure,
    write_log: Callable[[], None] | None = None,
    next_task_id: str = "",
) -> float | None:
    """Record a failed attempt: retrying (returns the delay to schedule, or None when parked) or failed.

    `next_task_id`: the id of the task the caller will publish for the next attempt (a branch of a
    chunk retries in a task of its own); by default the next attempt keeps the row's task id."""
    used = row.attempts - row.attempt_base
    if not failure.retryable or used >= step.retry.max_attempts:
        step_fail(row=row, step=step, failure=failure, write_log=write_log)
        return None
    delay = step.retry.delay(used)
    if failure.retry_after is not None:
        delay = max(delay, failure.retry_after)
    parked = delay > settings.CHORDFLOW_MAX_COUNTDOWN  # too long for a countdown: the sweeper fires it
    fields = {
        "next_retry_at": timezone.now() + timedelta(seconds=delay),
        "error_type": failure.type,
        "error_message": failure.message,
        "error_traceback": failure.traceback,
        **({"task_id": ""} if parked else {"task_id": next_task_id} if next_task_id else {}),
    }
    if not recorded(logged(write_log, lambda: _retry_later(row, failure, delay, fields))):
        return None
    return None if parked else delay


def _retry_later(row: StepRun, failure: Failure, delay: float, fields: dict) -> bool:
    return transitions.move_step(
        StepMove.RETRY_LATER, row.pk, run_id=row.run_id, step=row.step_id, branch=row.branch_index,
        message=f"{failure.type}: {failure.message}", fields=fields, attempt=row.attempts, delay=round(delay, 3),
        of_attempt=row.attempts, duration=transitions.attempt_duration(row, timezone.now()),
    )  # fmt: skip


def step_fail(*, row: StepRun, step: StepSpec, failure: Failure, write_log: Callable[[], None] | None = None) -> None:
    """The step (or branch) has failed for good; its on_failure decides what the run does."""
    recorded(logged(write_log, lambda: _fail(row, step, failure)))


def _fail(row: StepRun, step: StepSpec, failure: Failure) -> bool:
    error = error_dict(step=row.step_id, branch=row.branch_index, error_type=failure.type, message=failure.message)
    if row.parent_id is None:
        return step_give_up(
            run_id=row.run_id, step=step, step_run_id=row.pk, error=error, traceback=failure.traceback,
            attempt=row.attempts, duration=transitions.attempt_duration(row, timezone.now()),
        )  # fmt: skip
    now = timezone.now()
    fields = {
        "error_type": failure.type,
        "error_message": failure.message,
        "error_traceback": failure.traceback,
        "finished_at": now,
        "next_retry_at": None,
    }
    moved = transitions.move_step(
        StepMove.FAIL, row.pk, run_id=row.run_id, step=row.step_id, branch=row.branch_index,
        message=f"{failure.type}: {failure.message}", fields=fields, attempt=row.attempts, of_attempt=row.attempts,
        duration=transitions.attempt_duration(row, now),
    )  # fmt: skip
    if moved:
        branch_failed(branch=row, step=step, error=error)
    return moved
