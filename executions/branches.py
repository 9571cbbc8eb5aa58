"""for_each branches: publish a wide fan-out, count finished branches, join them, fail their step."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from executions import events, sql, transitions
from executions.advance import advance_locked
from executions.dispatch import publish_chord
from executions.models import StepRun
from executions.resolve import step_give_up
from executions.selectors import run_facts
from executions.states import StepMove, StepStatus
from workflows.services import version_spec_by_id
from workflows.spec import StepSpec

S = StepStatus


def fan_out_publish(*, parent_id: int) -> int:
    """Publish the chord of a fan-out too wide to publish in the transaction's caller. Returns the width.

    Only branches still queued for their first attempt are published: run twice, the second
    publish finds them claimed and its messages do nothing.
    """
    parent = StepRun.objects.filter(pk=parent_id).values("run_id", "step_id", "status").first()
    if parent is None or parent["status"] != S.RUNNING:
        return 0
    facts = run_facts(parent["run_id"])
    step = version_spec_by_id(facts.version_id, facts.content_hash).step(parent["step_id"])
    branches = list(
        StepRun.objects.filter(parent_id=parent_id, status=S.QUEUED, attempts=0)
        .order_by("branch_index")
        .values_list("pk", "task_id", "branch_index")
    )
    if branches:
        publish_chord(run_id=parent["run_id"], parent_id=parent_id, step=step, branches=branches)
    return len(branches)


def branch_finished(parent_id: int, finished: int = 1) -> None:
    """Count finished branches on their parent (one, or a chunk's); the count that completes it joins them."""
    done, count, status = sql.count_branch(parent_id, finished)
    if done >= (count or 0) and status == S.RUNNING:
        _join(parent_id)


def branch_failed(*, branch: StepRun, step: StepSpec, error: dict) -> None:
    """A branch failed for good: its step fails through the same give-up path as any step, and its
    other branches are cancelled. Inside a transaction, after the branch's own FAIL."""
    _done, _count, parent_status = sql.count_branch(branch.parent_id)
    summary = f"branch {branch.branch_index} failed: {error['type']}: {error['message']}"
    if StepMove.FAIL.allows(parent_status):
        # first the other branches, so that whatever the step's failure finishes sees them ended
        siblings = StepRun.objects.filter(parent_id=branch.parent_id)
        transitions.steps_cancel(siblings, run_id=branch.run_id, reason=summary)
        step_give_up(
            run_id=branch.run_id, step=step, step_run_id=branch.parent_id, error=error, allow_escalation=False,
            summary=summary,
        )  # fmt: skip


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
    run_id, step_id = parent["run_id"], parent["step_id"]
    fields = {"output": outputs, "finished_at": timezone.now()}
    if transitions.move_step(
        StepMove.SUCCEED, parent_id, run_id=run_id, step=step_id, fields=fields, branches=len(outputs)
    ):
        advance_locked(run_id, succeeded=step_id)
