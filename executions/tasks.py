"""Celery tasks: thin interfaces that take ids and call one service each."""

from __future__ import annotations

import time

from billiard.exceptions import SoftTimeLimitExceeded
from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from executions import (
    advance,
    attempts,
    branches,
    chunks,
    continuation,
    dispatch,
    gauges,
    metrics,
    ratelimit,
    retention,
    schedules,
    selectors,
    sweeper,
)
from workflows.definition import MAX_ATTEMPTS_LIMIT

# Failures of our own infrastructure (a locked SQLite file, a dropped PostgreSQL connection) are
# retried by Celery with exponential backoff and jitter. An action's own failures follow the step's
# retry policy instead: `attempts.step_execute` returns the policy's delay and the task re-sends itself.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


# A task that runs attempts: acknowledged once done, back in the queue when its worker dies.
ATTEMPT_TASK = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": TRANSIENT_ERRORS,
    "dont_autoretry_for": (SoftTimeLimitExceeded,),
    "retry_backoff": True,
    "retry_backoff_max": settings.CHORDFLOW_MAX_COUNTDOWN,
    "retry_jitter": True,
}


@shared_task(bind=True, name=dispatch.STEP_EXECUTE, max_retries=MAX_ATTEMPTS_LIMIT, **ATTEMPT_TASK)
def step_execute(
    self, step_run_id: int, attempt: int, rate_limited: bool = False, late_after: float | None = None
) -> None:
    if late_after is not None and time.time() > late_after:
        rate_limited = True  # it missed its rate-limit slot: it asks for a new one
    if rate_limited and not ratelimit.admit(step_run_id=step_run_id, attempt=attempt):
        return  # parked until its slot: a release task publishes it then
    with _offer(self) as offer:
        countdown = attempts.step_execute(step_run_id=step_run_id, attempt=attempt)
        attempts.continue_chain(offer)  # the chain's next steps, claimed for this task as each succeeded
    if countdown is not None:
        # Same task id, so a chord waiting on this branch keeps waiting for it.
        # Celery re-sends without the first message's argsrepr: label the next attempt again.
        label = selectors.step_run_label(step_run_id=step_run_id, attempt=attempt + 1)
        raise self.retry(
            args=(step_run_id, attempt + 1), countdown=countdown, max_retries=MAX_ATTEMPTS_LIMIT, argsrepr=label
        )


@shared_task(name=dispatch.STEP_EXECUTE_CHUNK, **ATTEMPT_TASK)
def step_execute_chunk(parent_id: int, step_run_ids: list[int]) -> int:
    return chunks.chunk_execute(parent_id=parent_id, step_run_ids=step_run_ids)


def _offer(task):
    """A step task's offer to go on with a step its advance makes ready (executions.continuation),
    within its message's soft time limit."""
    request = task.request
    soft_limit = (request.timelimit or (None, None))[1] or task.app.conf.task_soft_time_limit
    queue = (request.delivery_info or {}).get("routing_key")
    return continuation.offered(task_id=request.id, queue=queue, soft_limit=soft_limit)


@shared_task(name=dispatch.RUN_ADVANCE, acks_late=True, autoretry_for=TRANSIENT_ERRORS, retry_backoff=True)
def run_advance(run_id: str) -> None:
    """A chord callback: start what the join made ready. A no-op when a step already did."""
    advance.run_advance(run_id=run_id)


@shared_task(name=dispatch.STEP_JOIN, acks_late=True, autoretry_for=TRANSIENT_ERRORS, retry_backoff=True)
def step_join(parent_id: int) -> None:
    """A for_each chord callback: finish the step when every branch is done. A no-op when the last branch did."""
    branches.step_join(parent_id=parent_id)


@shared_task(name=dispatch.PUBLISH_FAN_OUT, acks_late=True, ignore_result=True, autoretry_for=TRANSIENT_ERRORS)
def publish_fan_out(parent_id: int) -> int:
    """Publish a wide for_each's chord on a worker, so the transaction that fanned out returns at once."""
    return branches.fan_out_publish(parent_id=parent_id)


# Beat's housekeeping (the sweep, the schedule tick; approvals.expire too) runs every few seconds and
# sends no task events (send_events=False): in Flower it would bury the steps. Their results are in
# the worker's log and, when they repair or fire something, in the runs' events.
@shared_task(name=dispatch.SWEEP, ignore_result=True, send_events=False)
def sweep() -> dict:
    """Run by beat: repair lost messages, overdue attempts and stalled runs."""
    return sweeper.sweep()


@shared_task(
    name=dispatch.SCHEDULE_TICK, ignore_result=True, send_events=False, autoretry_for=TRANSIENT_ERRORS, max_retries=0
)
def schedule_tick() -> dict:
    """Run by beat every CHORDFLOW_SCHEDULE_TICK seconds: fire the schedules that are due."""
    return schedules.schedule_tick()


@shared_task(name=dispatch.PURGE_RUNS, ignore_result=True, send_events=False)
def purge_runs() -> dict:
    """Run by beat (hourly): delete finished runs past their retention, a batch per transaction."""
    return dict(retention.purge_runs())


@shared_task(name=dispatch.RATE_RELEASE, ignore_result=True, send_events=False, autoretry_for=TRANSIENT_ERRORS)
def rate_release(run_id: str, step_id: str) -> int:
    """Publish a rate-limited step's parked attempts as their slots come (then come back for the rest)."""
    return ratelimit.release(run_id=run_id, step_id=step_id)


@shared_task(
    name=dispatch.METRICS_FOLD, ignore_result=True, send_events=False, autoretry_for=TRANSIENT_ERRORS, max_retries=0
)
def metrics_fold() -> int:
    """Run by beat every CHORDFLOW_METRICS_FOLD_INTERVAL seconds: new events into the metrics, and a
    sample of queue depth and pending approvals for the metrics page."""
    return metrics.metrics_fold(samples=gauges.samples())
