"""The self-healing sweep, run by beat: a plain function that repairs what a crash or a lost message left.

- a step queued for longer than CHORDFLOW_REQUEUE_AFTER is published again (its message was lost;
  if it was not, the second delivery finds the attempt claimed and does nothing);
- a retry that is due and has no message (parked, or lost) is published;
- an attempt running past its timeout plus CHORDFLOW_TIMEOUT_GRACE has no live task (its worker died,
  or the hard time limit killed it): it counts as failed and is retried or failed by the policy;
- a for_each step whose branches are all done is joined; a run with nothing in flight is advanced.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from executions import attempts, concurrency, steplogs, transitions
from executions.advance import run_advance
from executions.branches import step_join
from executions.dispatch import new_task_id, queue_depth, step_signature
from executions.models import Run, StepRun
from executions.selectors import run_facts
from executions.states import STEP_IN_FLIGHT, RunStatus, StepMove, StepStatus
from workflows.services import version_spec_by_id

logger = logging.getLogger(__name__)
S = StepStatus
BATCH = 1000


def sweep(now=None) -> dict[str, int]:
    now = now or timezone.now()
    counts = {
        "requeued": requeue_lost(now),
        "retries_fired": fire_due_retries(now),
        "attempts_expired": expire_overdue_attempts(now),
        "joined": join_finished_maps(),
        "runs_advanced": advance_stalled_runs(now),
        "runs_admitted": concurrency.restore(),
    }
    if any(counts.values()):
        logger.info("sweep repaired: %s", counts)
    return counts


def _step(row: StepRun):
    facts = run_facts(row.run_id)
    return version_spec_by_id(facts.version_id, facts.content_hash).step(row.step_id)


def _publish(row: StepRun, *, attempt: int, countdown: float | None = None) -> None:
    step = _step(row)
    task_id = new_task_id()
    StepRun.objects.filter(pk=row.pk).update(task_id=task_id)
    signature = step_signature(
        step_run_id=row.pk, attempt=attempt, step=step, task_id=task_id, run_id=row.run_id, branch=row.branch_index
    )
    signature.apply_async(countdown=countdown, ignore_result=True)


def requeue_lost(now) -> int:
    """Re-publish steps queued too long, only where their queue is empty.

    A message still waiting behind a backlog is not lost; one reserved by a live worker runs soon.
    What remains is a message held by a dead worker, or never published (broker down at commit).
    """
    cutoff = now - timedelta(seconds=settings.CHORDFLOW_REQUEUE_AFTER)
    # A row parked by a rate limit waits for its slot (next_retry_at): lost only once that is long past.
    rows = StepRun.objects.filter(status=S.QUEUED, queued_at__lt=cutoff).exclude(next_retry_at__gte=cutoff)[:BATCH]
    depths: dict[str, int | None] = {}
    count = 0
    for row in rows:
        queue = _step(row).queue
        if queue not in depths:
            depths[queue] = queue_depth(queue)
        if depths[queue]:
            continue
        if transitions.move_step(StepMove.REQUEUE, row.pk, run_id=row.run_id, fields={"queued_at": now}):
            _publish(row, attempt=row.attempts + 1)
            count += 1
    return count


def fire_due_retries(now) -> int:
    lost_cutoff = now - timedelta(seconds=settings.CHORDFLOW_REQUEUE_AFTER)
    parked = StepRun.objects.filter(status=S.RETRYING, next_retry_at__lte=now, task_id="")
    lost = StepRun.objects.filter(status=S.RETRYING, next_retry_at__lt=lost_cutoff)
    count = 0
    for row in (parked | lost)[:BATCH]:
        _publish(row, attempt=row.attempts + 1)
        count += 1
    return count


def expire_overdue_attempts(now) -> int:
    grace = settings.CHORDFLOW_TIMEOUT_GRACE
    running = StepRun.objects.filter(
        status=S.RUNNING, branch_count__isnull=True, started_at__lt=now - timedelta(seconds=grace)
    )[:BATCH]
    count = 0
    for row in running:
        step = _step(row)
        if row.started_at + timedelta(seconds=step.timeout + grace) > now:
            continue
        failure = attempts.Failure(
            "LostAttemptError",
            f"attempt {row.attempts} did not finish within the step's timeout of {step.timeout:g}s "
            f"(+{grace:g}s grace): its worker died or was stopped",
            retryable=True,
        )
        write_log = steplogs.lost_attempt_writer(
            run_id=row.run_id, step_id=row.step_id, branch=row.branch_index, attempt=row.attempts,
            error_type=failure.type, message=failure.message,
        )  # fmt: skip
        countdown = attempts.attempt_failed(row=row, step=step, failure=failure, write_log=write_log)
        if countdown is not None:
            _publish(row, attempt=row.attempts + 1, countdown=countdown)
        count += 1
    return count


def join_finished_maps() -> int:
    parents = StepRun.objects.filter(
        status=S.RUNNING, branch_count__isnull=False, branches_done__gte=F("branch_count")
    ).values_list("pk", flat=True)[:BATCH]
    for parent_id in parents:
        step_join(parent_id=parent_id)
    return len(parents)


def advance_stalled_runs(now) -> int:
    in_flight = StepRun.objects.filter(run=OuterRef("pk"), status__in=STEP_IN_FLIGHT | {S.WAITING})
    stalled = (
        Run.objects.filter(
            status=RunStatus.RUNNING, started_at__lt=now - timedelta(seconds=settings.CHORDFLOW_STALL_AFTER)
        )
        .exclude(Exists(in_flight))
        .values_list("pk", flat=True)[:BATCH]
    )
    for run_id in stalled:
        run_advance(run_id=run_id)
    return len(stalled)
