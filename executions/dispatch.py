"""Publishing step tasks after commit: one task, a group, or a chord whose callback joins.

The rows decide readiness; Celery only carries ids. A publish that fails (broker down) is logged and
left to the sweeper, which re-dispatches steps queued for too long.
"""

from __future__ import annotations

import itertools
import logging
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from celery import chord, group
from django.conf import settings
from django.db import transaction

from config.celery_app import app
from executions.selectors import step_label
from workflows.spec import StepSpec

logger = logging.getLogger(__name__)

REVOKE_BATCH = 1000

# The tasks' names: signatures are built by name, so this module needs nothing from executions.tasks.
STEP_EXECUTE = "executions.step_execute"
STEP_EXECUTE_CHUNK = "executions.step_execute_chunk"
RUN_ADVANCE = "executions.run_advance"
STEP_JOIN = "executions.step_join"
PUBLISH_FAN_OUT = "executions.publish_fan_out"
SWEEP = "executions.sweep"
SCHEDULE_TICK = "executions.schedule_tick"
PURGE_RUNS = "executions.purge_runs"
RATE_RELEASE = "executions.rate_release"
METRICS_FOLD = "executions.metrics_fold"


def new_task_id() -> str:
    return str(uuid.uuid4())


def step_signature(
    *,
    step_run_id: int,
    attempt: int,
    step: StepSpec,
    task_id: str,
    run_id: Any = None,
    branch: int | None = None,
    late_after: float | None = None,
):
    """A step's task. Its arguments are ids; `argsrepr` says what they mean, for Flower and the logs:
    "shop-orders run 1a2b3c4d step charge branch 3 attempt 1" instead of "(519, 1)".

    A rate-limited step's task asks for a slot before it starts (executions.ratelimit), unless it is
    published at the slot it was given: then it starts unless it is later than `late_after`."""
    if step.rate_limit is None:
        kwargs = {}
    elif late_after is None:
        kwargs = {"rate_limited": True}
    else:
        kwargs = {"late_after": late_after}
    soft, hard = message_limits(step.timeout)
    return app.signature(
        STEP_EXECUTE,
        args=(step_run_id, attempt),
        kwargs=kwargs,
        task_id=task_id,
        queue=step.queue,
        soft_time_limit=soft,
        time_limit=hard,
        argsrepr=step_label(run_id=run_id, step_id=step.id, branch=branch, attempt=attempt),
    )


def message_limits(timeout: float) -> tuple[float, float]:
    """(soft, hard) Celery time limits of a step task's message. The step's own limits (its timeout,
    then the hard grace) are kept in the process (executions.timelimits); the message's lie past them
    by CHORDFLOW_CHAIN_BUDGET, so that the steps the task continues with fit (executions.continuation),
    and stop an action that the process could not."""
    grace = settings.CHORDFLOW_HARD_TIME_LIMIT_GRACE
    soft = timeout + grace + settings.CHORDFLOW_CHAIN_BUDGET
    return soft, soft + grace


@dataclass
class DispatchPlan:
    """The tasks one transaction makes ready; `send_on_commit()` publishes them after it commits."""

    run_id: str
    steps: list = field(default_factory=list)  # signatures of plain steps
    ready: list[tuple[int, int, StepSpec]] = field(default_factory=list)  # theirs: (row id, attempt, spec)
    join: bool = False
    # parent, step, branches (row id, task id, branch index)
    maps: list[tuple[int, StepSpec, list[tuple[int, str, int]]]] = field(default_factory=list)

    def add_step(self, *, step_run_id: int, attempt: int, step: StepSpec, task_id: str) -> None:
        self.steps.append(
            step_signature(step_run_id=step_run_id, attempt=attempt, step=step, task_id=task_id, run_id=self.run_id)
        )
        self.ready.append((step_run_id, attempt, step))

    def drop_step(self, index: int) -> None:
        """The running task took this step (executions.continuation): no message for it, and no
        chord (each step's own success advances the run; the chord's callback only did it again)."""
        del self.steps[index], self.ready[index]
        self.join = False

    def add_map(self, parent_id: int, step: StepSpec, branches: list[tuple[int, str, int]]) -> None:
        """A fan-out: `branches` are (step run id, task id, branch index), all at attempt 1."""
        self.maps.append((parent_id, step, branches))

    def send_on_commit(self) -> None:
        if self.steps or self.maps:
            transaction.on_commit(self.send)

    def send(self) -> None:
        try:
            if self.steps and self.join:
                chord(group(self.steps))(app.signature(RUN_ADVANCE, args=(str(self.run_id),), immutable=True))
            else:
                # Outside a chord nothing reads a step task's result (the rows are the record): skip storing it.
                for signature in self.steps:
                    signature.set(ignore_result=True)
                if len(self.steps) == 1:
                    self.steps[0].apply_async()
                elif self.steps:
                    group(self.steps).apply_async()
            for parent_id, step, branches in self.maps:
                if len(branches) > settings.CHORDFLOW_INLINE_FAN_OUT:
                    # Publishing costs about 0.8 ms a branch: a worker of the step's queue does it, and
                    # the caller (a REST request, say) returns now.
                    app.signature(PUBLISH_FAN_OUT, args=(parent_id,)).apply_async(queue=step.queue, ignore_result=True)
                else:
                    publish_chord(run_id=self.run_id, parent_id=parent_id, step=step, branches=branches)
        except Exception:
            logger.exception("could not publish the tasks of run %s; the sweeper will re-dispatch them", self.run_id)


def advance_on_commit(run_id: Any) -> None:
    """After commit, have a worker plan and start the run's first steps (the sweep does it if this is lost)."""

    def send() -> None:
        try:
            app.signature(RUN_ADVANCE, args=(str(run_id),)).apply_async(ignore_result=True)
        except Exception:
            logger.exception("could not publish the first advance of run %s; the sweeper will do it", run_id)

    transaction.on_commit(send)


def fan_out_chunk(width: int, step: StepSpec) -> int:
    """How many branches of a for_each one task carries (executions.chunks).

    Enough chunks that every worker process stays busy (CHORDFLOW_FAN_OUT_CHUNKS of them, so I/O-bound
    branches still run side by side), none larger than CHORDFLOW_FAN_OUT_CHUNK. A rate-limited step's
    branches each ask for a slot of their own: one a task."""
    if step.rate_limit is not None:
        return 1
    chunks = max(1, settings.CHORDFLOW_FAN_OUT_CHUNKS)
    return max(1, min(settings.CHORDFLOW_FAN_OUT_CHUNK, math.ceil(width / chunks)))


def chunk_signature(*, parent_id: int, step: StepSpec, task_id: str, run_id: Any, branches: list[tuple[int, str, int]]):
    """The task of a chunk of branches, all at attempt 1. Each branch has its step's time limits in the
    chunk (executions.chunks); the chunk's own are a backstop, a branch's limits times its size."""
    per_branch = step.timeout + settings.CHORDFLOW_HARD_TIME_LIMIT_GRACE
    soft = len(branches) * per_branch + settings.CHORDFLOW_HARD_TIME_LIMIT_GRACE
    first, last = branches[0][2], branches[-1][2]
    return app.signature(
        STEP_EXECUTE_CHUNK,
        args=(parent_id, [pk for pk, _task_id, _index in branches]),
        task_id=task_id,
        queue=step.queue,
        soft_time_limit=soft,
        time_limit=soft + settings.CHORDFLOW_HARD_TIME_LIMIT_GRACE,
        argsrepr=step_label(run_id=run_id, step_id=step.id, branch=f"{first}-{last}", attempt=1),
    )


def publish_chord(*, run_id: Any, parent_id: int, step: StepSpec, branches: list[tuple[int, str, int]]) -> None:
    """One chord: a task per chunk of branches (the branches that share a task id, executions.chunks),
    and a callback that joins them (idempotently, as the last branch does)."""
    signatures = []
    for task_id, members in itertools.groupby(branches, key=lambda branch: branch[1]):
        members = list(members)
        if len(members) == 1:
            pk, _task_id, index = members[0]
            signatures.append(
                step_signature(step_run_id=pk, attempt=1, step=step, task_id=task_id, run_id=run_id, branch=index)
            )
        else:
            signatures.append(
                chunk_signature(parent_id=parent_id, step=step, task_id=task_id, run_id=run_id, branches=members)
            )
    chord(group(signatures))(app.signature(STEP_JOIN, args=(parent_id,), immutable=True))


def queue_depth(queue: str) -> int | None:
    """Messages waiting in a broker queue (not counting those reserved by workers); None if unknown."""
    try:
        return queue_depths([queue])[queue]
    except Exception:
        return None


def queue_depths(queues: list[str]) -> dict[str, int | None]:
    """queue_depth of each, over one broker connection; None for a queue the broker does not know (on
    Redis: nothing was ever sent to it, or it is empty). Raises when the broker does not answer."""
    depths: dict[str, int | None] = dict.fromkeys(queues)
    with app.connection_for_read() as conn:
        channel = conn.channel()
        for queue in queues:
            try:
                depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except conn.channel_errors:
                channel = conn.channel()  # RabbitMQ closes the channel of a failed passive declare
        channel.close()
    return depths


def revoke_on_commit(task_ids: list[str]) -> None:
    """Revoke tasks after commit: queued ones will not run (running ones: executions.cancellation)."""
    if not task_ids:
        return

    def revoke() -> None:
        try:
            for start in range(0, len(task_ids), REVOKE_BATCH):
                app.control.revoke(task_ids[start : start + REVOKE_BATCH])
        except Exception:
            logger.warning("could not revoke %d tasks", len(task_ids), exc_info=True)

    transaction.on_commit(revoke)
