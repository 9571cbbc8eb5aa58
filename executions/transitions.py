"""The one gate for status writes: a guarded UPDATE and its RunEvent together, and `run_finish`.

Every status change of a step, a branch or a run in `executions/` and `approvals/` passes here,
named (states.StepMove, states.RunMove): the UPDATE's WHERE clause holds that move's own sources,
so a move refused by the current status changes nothing and records nothing. Events go to the
listeners of `events` after commit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db.models import F, QuerySet
from django.utils import timezone

from executions import cancellation, events, sql
from executions.dispatch import new_task_id, revoke_on_commit
from executions.models import Run, StepRun
from executions.states import RUN_FINISH, STEP_IN_FLIGHT, RunStatus, StepMove, Transition

FinishHook = Callable[..., None]
_finish_hooks: list[FinishHook] = []


def move_steps(
    move: Transition,
    rows: QuerySet,
    *,
    run_id: Any,
    step: str = "",
    branch: int | None = None,
    message: str = "",
    fields: dict[str, Any] | None = None,
    **data: Any,
) -> int:
    """Apply `move` to the rows still in one of its sources; record its event once if any changed."""
    changed = rows.filter(status__in=move.sources).update(status=move.target, **(fields or {}))
    if changed and move.event:
        events.record(run_id, move.event, step=step, branch=branch, status=move.target, message=message, **data)
    return changed


def move_step(move: Transition, step_run_id: int, *, of_attempt: int | None = None, **kwargs: Any) -> bool:
    """`of_attempt`: only while the row still runs that attempt. An attempt's own outcome passes it, so
    that a stale attempt (its row re-queued by the sweep and claimed again meanwhile) records nothing."""
    rows = StepRun.objects.filter(pk=step_run_id)
    if of_attempt is not None:
        rows = rows.filter(attempts=of_attempt)
    return move_steps(move, rows, **kwargs) == 1


def move_run(move: Transition, run_id: Any, *, fields: dict[str, Any] | None = None, **data: Any) -> bool:
    changed = Run.objects.filter(pk=run_id, status__in=move.sources).update(status=move.target, **(fields or {}))
    if changed:
        events.record(run_id, move.event, status=move.target, **data)
    return changed == 1


def step_claim(*, step_run_id: int, attempt: int, now: datetime, task_id: str | None = None) -> StepRun | None:
    """CLAIM attempt `attempt` and read what it needs, in one statement. None when refused.
    `task_id`: the task that runs it, when not the one it was queued for (executions.continuation)."""
    rows = steps_claim(step_run_ids=[step_run_id], attempt=attempt, now=now, task_id=task_id)
    return rows[0] if rows else None


def steps_claim(*, step_run_ids: list[int], attempt: int, now: datetime, task_id: str | None = None) -> list[StepRun]:
    """CLAIM attempt `attempt` of many rows (a chunk of branches) in one statement: the rows it moved,
    in branch order, each with its event."""
    sources = StepMove.CLAIM.sources
    rows = sql.claim_many(step_run_ids=step_run_ids, attempt=attempt, now=now, sources=sources, task_id=task_id)
    rows.sort(key=lambda row: (row.branch_index is None, row.branch_index))
    for row in rows:
        row.started_at = now
        timing = {}
        if row.queued_at is not None and attempt == row.attempt_base + 1:  # queued -> started, for the metrics
            timing["wait"] = round(max((now - row.queued_at).total_seconds(), 0.0), 6)
        events.record(
            row.run_id, StepMove.CLAIM.event, step=row.step_id, branch=row.branch_index, status=StepMove.CLAIM.target,
            attempt=attempt, **timing,
        )  # fmt: skip
    return rows


def steps_succeed(rows: list[StepRun], *, outputs: dict[int, Any], now: datetime) -> list[StepRun]:
    """SUCCEED many running attempts in one statement (a chunk's branches, each at its own start time
    `row.started_at`): the rows it moved, each with the event a single SUCCEED records."""
    by_id = {row.pk: row for row in rows}
    attempt = rows[0].attempts
    assert all(row.attempts == attempt for row in rows), "one statement, one attempt number"
    outcomes = {row.pk: (outputs[row.pk], row.started_at) for row in rows}
    moved = [
        by_id[pk]
        for pk in sql.succeed_many(outcomes=outcomes, attempt=attempt, now=now, sources=StepMove.SUCCEED.sources)
    ]
    moved.sort(key=lambda row: row.branch_index)
    for row in moved:
        events.record(
            row.run_id, StepMove.SUCCEED.event, step=row.step_id, branch=row.branch_index,
            status=StepMove.SUCCEED.target, attempt=attempt, duration=attempt_duration(row, now),
        )  # fmt: skip
    return moved


def steps_restamp(*, step_run_ids: list[int], attempt: int, now: datetime) -> set[int]:
    """Claimed attempts not started yet (a chunk's branches ahead) count from `now`: the sweep's deadline
    moves with them. No status changes, no event. Returns those still running `attempt`."""
    return sql.restamp(step_run_ids=step_run_ids, attempt=attempt, now=now)


def attempt_duration(row: StepRun, now: datetime) -> float:
    """Seconds the claimed attempt `row` has run: its outcome's event carries them (the metrics' step duration)."""
    return round(max((now - row.started_at).total_seconds(), 0.0), 6) if row.started_at else 0.0


def step_fan_out(
    *, step_run_id: int, run_id: Any, step: str, items: list, params: list, now: datetime, chunk: int = 1
) -> list[tuple[int, str, int]] | None:
    """FAN_OUT a for_each step: a branch row per item, each queued for its first attempt.

    Every `chunk` consecutive branches share a task id: one task carries them (executions.chunks).
    Returns the branches' (row id, task id, branch index) to publish after commit; None when the move was refused.
    """
    move, width = StepMove.FAN_OUT, len(items)
    fields = {"branch_count": width, "branches_done": 0, "queued_at": now, "started_at": now}
    if not StepRun.objects.filter(pk=step_run_id, status__in=move.sources).update(status=move.target, **fields):
        return None
    events.record(run_id, StepMove.QUEUE.event, step=step, status=StepMove.QUEUE.target, branches=width)
    events.record(run_id, move.event, step=step, status=move.target, branches=width)
    task_ids = [new_task_id() for _ in range(-(-width // chunk))]
    branches = StepRun.objects.bulk_create(
        [
            StepRun(
                run_id=run_id,
                step_id=step,
                parent_id=step_run_id,
                branch_index=index,
                status=StepMove.QUEUE.target,
                input=branch_params,
                item=item,
                queued_at=now,
                task_id=task_ids[index // chunk],
                attempt_base=0,
            )
            for index, (item, branch_params) in enumerate(zip(items, params, strict=True))
        ],
        batch_size=500,
    )
    return [(branch.pk, branch.task_id, branch.branch_index) for branch in branches]


def steps_cancel(rows: QuerySet, *, run_id: Any, reason: str) -> None:
    """CANCEL every unfinished row among `rows`; an event per top-level step.

    After commit their tasks are revoked, and those still running are terminated unless they stop
    within CHORDFLOW_CANCEL_GRACE seconds (executions.cancellation).
    """
    unfinished = rows.filter(status__in=StepMove.CANCEL.sources)
    in_flight = unfinished.filter(status__in=STEP_IN_FLIGHT).exclude(task_id="")
    task_ids = list(in_flight.order_by().values_list("task_id", flat=True).distinct())  # a chunk shares one
    top_level = list(unfinished.filter(branch_index__isnull=True).values_list("step_id", flat=True))
    unfinished.update(status=StepMove.CANCEL.target, finished_at=timezone.now(), next_retry_at=None)
    for step_id in top_level:
        events.record(run_id, StepMove.CANCEL.event, step=step_id, status=StepMove.CANCEL.target, message=reason)
    revoke_on_commit(task_ids)
    cancellation.stop_on_commit(run_id=run_id, task_ids=task_ids)


def steps_reset(rows: QuerySet) -> int:
    """RESET finished steps to pending for a run retry: their outputs and errors go, their attempts count on."""
    return rows.filter(status__in=StepMove.RESET.sources).update(
        status=StepMove.RESET.target,
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


# --- the one place a run finishes -----------------------------------------------------------------
def on_run_finish(hook: FinishHook) -> None:
    """Call `hook(run_id=..., status=...)` inside the transaction that finishes a run (wired from ready()).

    A hook writes to the database (it commits or rolls back with the finish, and may run again when
    that transaction is retried); anything outside it goes through transaction.on_commit.
    """
    if hook not in _finish_hooks:
        _finish_hooks.append(hook)


def off_run_finish(hook: FinishHook) -> None:
    if hook in _finish_hooks:
        _finish_hooks.remove(hook)


def run_finish(
    *, run_id: Any, status: RunStatus, output: Any = None, error: dict | None = None, by: str = "", reason: str = ""
) -> bool:
    """End a run: succeeded, failed or cancelled. Every way a run ends passes here. False when it had ended.

    Inside a transaction holding the run's row lock. A failed or cancelled run cancels its unfinished
    steps and branches (their tasks are revoked after commit); then the finish hooks run.
    """
    move = RUN_FINISH[status]
    fields: dict[str, Any] = {"finished_at": timezone.now()}
    if status == RunStatus.SUCCEEDED:
        fields["output"] = output
    elif status == RunStatus.FAILED:
        fields["error"] = error
    if not Run.objects.filter(pk=run_id, status__in=move.sources).update(status=move.target, **fields):
        return False
    data: dict[str, Any] = {}
    if status == RunStatus.FAILED:
        reason = reason or f"the run failed: {error['message']}"
        data = {"message": error["message"], "error": error}
    elif status == RunStatus.CANCELLED:
        data = {"by": by, "message": reason} if reason else {"by": by}  # why, when the engine cancelled it
        reason = reason or (f"cancelled by {by}" if by else "cancelled")
    if status != RunStatus.SUCCEEDED:
        steps_cancel(StepRun.objects.filter(run_id=run_id), run_id=run_id, reason=reason)
    events.record(run_id, move.event, status=move.target, **data)
    for hook in list(_finish_hooks):
        hook(run_id=run_id, status=status)
    return True
