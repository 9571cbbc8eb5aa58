"""Per-workflow concurrency limits: at most `limit` runs of a bucket running (or waiting) at once.

A bucket is a workflow and the value of its `concurrency.key` for the run's input ("" without a key).
Every decision about a bucket (admit a new run, start the next waiting one) holds its
ConcurrencyBucket row's lock and counts the bucket's runs from their rows, so concurrent starts from
any number of web processes and workers never exceed the limit, and nothing a crash leaves behind
can leak a slot: the sweep starts waiting runs whenever the rows say a slot is free.

A run waiting for a slot is a `pending` row with its bucket key: it holds no worker and no broker
message. Runs start in arrival order within their bucket; buckets are independent of each other.
"""

from __future__ import annotations

import contextvars
import json
import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from executions import events, transitions
from executions.dispatch import advance_on_commit
from executions.models import ConcurrencyBucket, Run
from executions.states import RunMove, RunStatus
from workflows import expressions
from workflows.exceptions import ExpressionError, InputValidationError, Problem
from workflows.services import version_spec
from workflows.spec import (
    CONCURRENCY_CANCEL_IN_PROGRESS,
    CONCURRENCY_CANCEL_NEWEST,
    Concurrency,
    WorkflowSpec,
)

logger = logging.getLogger(__name__)

ACTIVE = (RunStatus.RUNNING, RunStatus.WAITING)
MAX_KEY_LENGTH = 200
START, QUEUE, CANCEL = "start", "queue", "cancel"
BATCH = 100

# Buckets whose decision this context is making: the finish hook leaves them alone meanwhile (a
# cancel_in_progress start cancels a run, and that run's finish must not start the new run early).
_deciding: contextvars.ContextVar[frozenset] = contextvars.ContextVar("chordflow_deciding", default=frozenset())


def bucket_key(spec: WorkflowSpec, run_input: Any) -> str | None:
    """The run's bucket: None when the workflow has no limit, "" for its one bucket, else the key's value."""
    if spec.concurrency is None:
        return None
    if spec.concurrency.key is None:
        return ""
    try:
        value = expressions.evaluate(spec.concurrency.key, {"input": run_input})
    except ExpressionError as exc:
        raise InputValidationError([Problem("concurrency.key", f"cannot be computed from this input: {exc}")]) from None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(text) > MAX_KEY_LENGTH:
        problem = f"its value for this input is {len(text):,} characters; at most {MAX_KEY_LENGTH} identify a bucket"
        raise InputValidationError([Problem("concurrency.key", problem)])
    return text


def describe(limit: int, key: str, running: int) -> str:
    return f"waiting for a concurrency slot: {running} of {limit} running" + (f" for {key}" if key else "")


def _lock(workflow_id: int, key: str) -> None:
    bucket, _ = ConcurrencyBucket.objects.get_or_create(workflow_id=workflow_id, key=key)
    ConcurrencyBucket.objects.select_for_update().filter(pk=bucket.pk).first()


def _running(workflow_id: int, key: str) -> int:
    return Run.objects.filter(workflow_id=workflow_id, concurrency_key=key, status__in=ACTIVE).count()


def admit(run: Run, limits: Concurrency) -> tuple[str, str]:
    """Inside run_start's transaction, for a new `pending` run: (START | QUEUE | CANCEL, why)."""
    key = run.concurrency_key or ""
    _lock(run.workflow_id, key)
    running = _running(run.workflow_id, key)
    if limits.strategy == CONCURRENCY_CANCEL_NEWEST:
        if running < limits.limit:
            return START, ""
        return CANCEL, f"concurrency limit reached: {running} of {limits.limit} running" + (
            f" for {key}" if key else ""
        )
    if limits.strategy == CONCURRENCY_CANCEL_IN_PROGRESS:
        oldest = Run.objects.filter(workflow_id=run.workflow_id, concurrency_key=key, status__in=ACTIVE)
        victims = list(oldest.order_by("created_at", "pk").values_list("pk", flat=True)[: running - limits.limit + 1])
        token = _deciding.set(_deciding.get() | {(run.workflow_id, key)})
        try:
            for victim in victims:
                transitions.run_finish(
                    run_id=victim, status=RunStatus.CANCELLED, by="concurrency",
                    reason=f"cancelled to make room for run {run.pk} (concurrency limit {limits.limit})",
                )  # fmt: skip
        finally:
            _deciding.reset(token)
        return START, ""
    ahead = Run.objects.filter(
        workflow_id=run.workflow_id, concurrency_key=key, status=RunStatus.PENDING, created_at__lt=run.created_at
    ).exists()
    if running < limits.limit and not ahead:
        return START, ""
    return QUEUE, describe(limits.limit, key, running)


def release(*, run_id: Any, status: str) -> None:
    """The finish hook: a run of a bucket ended, so its bucket may start the next waiting runs."""
    bucket = Run.objects.filter(pk=run_id).values_list("workflow_id", "concurrency_key").first()
    if bucket is None or bucket[1] is None or bucket in _deciding.get():
        return
    start_waiting(*bucket)


def start_waiting(workflow_id: int, key: str) -> int:
    """Start the bucket's oldest waiting runs while it has free slots. Inside a transaction."""
    _lock(workflow_id, key)
    running = _running(workflow_id, key)
    started = 0
    waiting = Run.objects.filter(workflow_id=workflow_id, concurrency_key=key, status=RunStatus.PENDING)
    for run in waiting.select_related("version").order_by("created_at", "pk")[:BATCH]:
        limits = version_spec(run.version).concurrency
        if limits is not None and running >= limits.limit:
            break
        if transitions.move_run(
            RunMove.START, run.pk, fields={"started_at": timezone.now()}, version=run.version.number
        ):
            advance_on_commit(run.pk)  # a worker plans and queues its first steps
            running += 1
            started += 1
    return started


def restore() -> int:
    """The sweep's part: start waiting runs wherever the rows say their bucket has a free slot (after a
    crash between a finish and the start of the next, or a lost transaction)."""
    buckets = (
        Run.objects.filter(status=RunStatus.PENDING, concurrency_key__isnull=False)
        .values_list("workflow_id", "concurrency_key")
        .distinct()[:BATCH]
    )
    started = 0
    for workflow_id, key in list(buckets):
        with transaction.atomic(), events.event_batch():
            started += start_waiting(workflow_id, key)
    if started:
        logger.info("concurrency: started %d waiting runs", started)
    return started


def pending_reason(run: Run) -> str | None:
    """Why a pending run waits, for REST and the admin; None when it does not wait for a slot."""
    if run.status != RunStatus.PENDING or run.concurrency_key is None:
        return None
    limits = version_spec(run.version).concurrency
    if limits is None:
        return None
    return describe(limits.limit, run.concurrency_key, _running(run.workflow_id, run.concurrency_key))
