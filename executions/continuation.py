"""A chain's next step runs in the task that finished the step before it.

When an attempt succeeds and its advance makes a step ready on the same queue, the advance claims
that step in the same transaction, for the task that is running: no message is published for it,
none is delivered, and its claim commits with the outcome before it. The task then runs it, and so
on down a chain, while the next step still fits in the task's time budget: CHORDFLOW_CHAIN_BUDGET
seconds past the first step's own limits. Any other step made ready at the same time is published
as usual, so parallel branches still spread over the workers.

Nothing about a step changes: its events (queued, then started, at the same instant), its attempt,
its log, its time limits (kept in the process, executions.timelimits), its retries (a failure is
recorded at once, and its retry travels in a task of its own). A duplicate delivery of the task is
refused at the first claim, as before, and runs nothing. A worker that dies in a continued step
leaves it running with no message: the sweep retries it past its timeout plus the grace, as for any
attempt whose worker died.

Only in a prefork pool process (where the time limits are enforced), for steps without a rate limit
(each of those asks for a slot), and never for an operator's or a schedule's advance: only inside a
step task, which opens the offer.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from executions import timelimits, transitions
from executions.models import StepRun
from workflows.spec import StepSpec


@dataclass
class Offer:
    """A task's offer to run one more step after the current one: `next` once an advance took it."""

    task_id: str
    queue: str
    deadline: float  # time.monotonic() by which a taken step must be done, hard limit included
    next: tuple[StepRun, StepSpec] | None = None


_offer: contextvars.ContextVar[Offer | None] = contextvars.ContextVar("chordflow_continuation", default=None)


@contextmanager
def offered(*, task_id: str | None, queue: str | None, soft_limit: float | None) -> Iterator[Offer | None]:
    """Open an offer for the task that runs now (a step task, `soft_limit` seconds of its message)."""
    if not (settings.CHORDFLOW_CHAIN_BUDGET and task_id and queue and soft_limit) or not timelimits.in_pool_process():
        yield None
        return
    offer = Offer(task_id=task_id, queue=queue, deadline=time.monotonic() + soft_limit)
    token = _offer.set(offer)
    try:
        yield offer
    finally:
        _offer.reset(token)


def claim_next(ready: list[tuple[int, int, StepSpec]], now: datetime) -> int | None:
    """Inside an advance's transaction: claim one of `ready` (step run id, attempt, spec) for the
    running task, if it offered and the step fits. Returns its index in `ready`, or None."""
    offer = _offer.get()
    if offer is None or offer.next is not None:
        return None
    grace = settings.CHORDFLOW_HARD_TIME_LIMIT_GRACE
    for index, (step_run_id, attempt, step) in enumerate(ready):
        if step.queue != offer.queue or step.rate_limit is not None:
            continue
        if time.monotonic() + step.timeout + grace > offer.deadline - grace:
            continue  # it might not finish inside the task's limits: it gets a task of its own
        row = transitions.step_claim(step_run_id=step_run_id, attempt=attempt, now=now, task_id=offer.task_id)
        if row is not None:
            offer.next = (row, step)
            return index
    return None


def take(offer: Offer | None) -> tuple[StepRun, StepSpec] | None:
    """The step an advance claimed for this task, once (the task runs it next)."""
    if offer is None or offer.next is None:
        return None
    taken, offer.next = offer.next, None
    return taken
