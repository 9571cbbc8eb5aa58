"""Writes for approvals: request, decide, resolve escalations, expire. A step waits in the database
meanwhile: no worker, no message, for a minute or a month."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from approvals import notifications
from approvals.exceptions import ApprovalConflictError, NotAnApproverError
from approvals.models import RESOLVE_ESCALATION, Approval, ApprovalKind, ApprovalStatus, Decision, DecisionChoice
from approvals.selectors import may_decide, may_resolve_escalations
from executions import events
from executions.models import StepRun
from executions.services import step_resolve
from executions.states import StepStatus
from workflows.services import version_spec

logger = logging.getLogger(__name__)
A = ApprovalStatus


def _assign(approval: Approval, people: dict | None) -> None:
    """Point the approval at these users and groups (by name); names that match nobody are logged."""
    people = people or {}
    users = list(get_user_model().objects.filter(username__in=people.get("users", [])))
    groups = list(Group.objects.filter(name__in=people.get("groups", [])))
    missing = sorted(set(people.get("users", [])) - {u.username for u in users}) + sorted(
        set(people.get("groups", [])) - {g.name for g in groups}
    )
    if missing:
        logger.warning("approval %s names users or groups that do not exist: %s", approval.pk, ", ".join(missing))
    approval.users.set(users)
    approval.groups.set(groups)


def _record(approval: Approval, kind: str, **data: Any) -> None:
    events.record(
        approval.run_id, kind, step=approval.step_id, approval=approval.pk, approval_kind=approval.kind, **data
    )


# --- handlers the engine calls (registered in apps.py) --------------------------------------------
def approval_request(*, run, step, step_run_id: int, params: dict) -> Approval:
    """An approval step became ready: it is `waiting` now; create what people will decide."""
    timeout = params.get("timeout")
    approval = Approval.objects.create(
        kind=ApprovalKind.APPROVAL,
        run_id=run.pk,
        step_run_id=step_run_id,
        step_id=step.id,
        message=str(params.get("message", "")),
        required=params.get("required", 1),
        timeout=timeout,
        on_timeout=params.get("on_timeout", "reject"),
        escalate_to=params.get("escalate_to"),
        deadline=timezone.now() + timedelta(seconds=timeout) if timeout else None,
    )
    _assign(approval, params.get("approvers"))
    _record(approval, "approval.requested", message=approval.message, deadline=_iso(approval.deadline))
    notifications.notify_on_commit(approval)
    return approval


def escalation_request(*, run_id, step, step_run_id: int, error_type: str, message: str) -> Approval:
    """A step with on_failure: escalate failed for good: an operator decides retry, skip or fail."""
    run_version = StepRun.objects.select_related("run__version").get(pk=step_run_id).run.version
    escalate_to = version_spec(run_version).escalate_to
    approval = Approval.objects.create(
        kind=ApprovalKind.ESCALATION,
        run_id=run_id,
        step_run_id=step_run_id,
        step_id=step.id,
        message=f"Step {step.id} failed after its last attempt: {error_type}: {message}. Retry, skip or fail it?",
        any_resolver=escalate_to is None,
        error={"type": error_type, "message": message},
    )
    _assign(approval, escalate_to)
    _record(approval, "approval.requested", message=approval.message)
    notifications.notify_on_commit(approval)
    return approval


# --- decisions ------------------------------------------------------------------------------------
def _lock_pending(approval_id: int, user, *, kind: str) -> Approval:
    approval = Approval.objects.select_for_update().get(pk=approval_id)
    if approval.kind != kind:
        verb = (
            "resolve it with retry, skip or fail"
            if approval.kind == ApprovalKind.ESCALATION
            else "approve or reject it"
        )
        raise ApprovalConflictError(f"approval {approval.pk} is an {approval.kind}: {verb}")
    if approval.kind == ApprovalKind.ESCALATION and not may_resolve_escalations(user):
        raise NotAnApproverError(f"resolving an escalation needs the permission {RESOLVE_ESCALATION}")
    if not may_decide(user, approval):
        raise NotAnApproverError(f"you are not among the approvers of approval {approval.pk}")
    if approval.status != A.PENDING:
        raise ApprovalConflictError(f"approval {approval.pk} is already {approval.status}")
    if StepRun.objects.filter(pk=approval.step_run_id).values_list("status", flat=True).first() != StepStatus.WAITING:
        # The expiry sweep marks it cancelled; a write here would be rolled back with this error.
        raise ApprovalConflictError(f"approval {approval.pk} is no longer awaited: its run stopped waiting")
    return approval


def _decide(approval: Approval, user, decision: str, comment: str) -> None:
    if user is not None and Decision.objects.filter(approval=approval, user=user).exists():
        raise ApprovalConflictError(f"you have already decided approval {approval.pk}")
    name = user.get_username() if user is not None else ""
    Decision.objects.create(approval=approval, user=user, username=name, decision=decision, comment=comment)
    said = f"{decision} by {name or 'no one'}" + (f": {comment}" if comment else "")
    _record(approval, "approval.decided", message=said, decision=decision, by=name or None, comment=comment)


def _settle(approval: Approval, status: str, outcome: dict) -> None:
    approval.status = status
    approval.decided_at = timezone.now()
    approval.outcome = outcome
    approval.save(update_fields=["status", "decided_at", "outcome"])


def approval_decide(*, approval_id: int, user, decision: str, comment: str = "") -> Approval:
    """Approve or reject. The `required` approvals succeed the step; one rejection fails it.

    Raises NotAnApproverError (403) and ApprovalConflictError (409: settled, decided by this user
    already, an escalation, or no longer awaited). Concurrent decisions serialize on the row lock.
    """
    if decision not in (DecisionChoice.APPROVE, DecisionChoice.REJECT):
        raise ValueError(f"decision must be approve or reject, not {decision!r}")
    with transaction.atomic(), events.event_batch():
        approval = _lock_pending(approval_id, user, kind=ApprovalKind.APPROVAL)
        _decide(approval, user, decision, comment)
        if decision == DecisionChoice.REJECT:
            _reject(
                approval, f"rejected by {user.get_username()}" + (f": {comment}" if comment else ""), "ApprovalRejected"
            )
        else:
            approvers = list(
                approval.decisions.filter(decision=DecisionChoice.APPROVE)
                .order_by("id")
                .values_list("username", flat=True)
            )
            if len(approvers) >= approval.required:
                _approve(approval, decided_by=approvers, comment=comment)
    return approval


def _approve(approval: Approval, *, decided_by: list[str], comment: str) -> None:
    now = timezone.now()
    output = {"approved": True, "decided_by": decided_by, "comment": comment, "decided_at": now.isoformat()}
    _settle(approval, A.APPROVED, output)
    step_resolve(step_run_id=approval.step_run_id, outcome="succeed", output=output, by=", ".join(decided_by))


def _reject(approval: Approval, message: str, error_type: str) -> None:
    _settle(approval, A.REJECTED, {"approved": False, "reason": message})
    step_resolve(step_run_id=approval.step_run_id, outcome="fail", error_type=error_type, message=message)


RESOLUTIONS = {DecisionChoice.RETRY: "retry", DecisionChoice.SKIP: "skip", DecisionChoice.FAIL: "fail"}


def escalation_resolve(*, approval_id: int, user, decision: str, comment: str = "") -> Approval:
    """retry: the step runs again with a fresh set of attempts; skip: it ends skipped and the run goes on;
    fail: it fails as fail_run would."""
    if decision not in RESOLUTIONS:
        raise ValueError(f"decision must be retry, skip or fail, not {decision!r}")
    with transaction.atomic(), events.event_batch():
        approval = _lock_pending(approval_id, user, kind=ApprovalKind.ESCALATION)
        _decide(approval, user, decision, comment)
        _settle(approval, A.RESOLVED, {"decision": decision, "by": user.get_username(), "comment": comment})
        error = approval.error or {"type": "Escalated", "message": "failed"}
        step_resolve(
            step_run_id=approval.step_run_id,
            outcome=RESOLUTIONS[decision],
            error_type=error["type"],
            message=error["message"] + (f" (failed by {user.get_username()}: {comment})" if comment else ""),
            by=user.get_username(),
        )
    return approval


# --- the expiry sweep -----------------------------------------------------------------------------
def approvals_expire(now=None) -> dict[str, int]:
    """Run by beat: apply on_timeout to overdue approvals; close those whose run stopped waiting."""
    now = now or timezone.now()
    counts = {"expired": 0, "escalated": 0, "cancelled": 0}
    overdue = Approval.objects.filter(status=A.PENDING, kind=ApprovalKind.APPROVAL, deadline__lte=now)
    for approval_id in overdue.values_list("pk", flat=True)[:1000]:
        counts[_expire_one(approval_id, now)] += 1
    stale = Approval.objects.filter(status=A.PENDING).exclude(step_run__status=StepStatus.WAITING)
    counts["cancelled"] += stale.update(status=A.CANCELLED)
    return counts


def _expire_one(approval_id: int, now) -> str:
    with transaction.atomic(), events.event_batch():
        approval = Approval.objects.select_for_update().get(pk=approval_id)
        if approval.status != A.PENDING or approval.deadline is None or approval.deadline > now:
            return "cancelled" if approval.status == A.CANCELLED else "expired"
        waited = f"no decision within {approval.timeout:g}s"
        if approval.on_timeout == "escalate" and approval.escalations == 0:  # once; then it is rejected
            Decision.objects.create(approval=approval, decision=DecisionChoice.ESCALATE, comment=waited)
            _assign(approval, approval.escalate_to)
            approval.deadline = now + timedelta(seconds=approval.timeout or 0)
            approval.escalations += 1
            approval.save(update_fields=["deadline", "escalations"])
            _record(
                approval,
                "approval.escalated",
                message=waited,
                to=approval.escalate_to,
                deadline=_iso(approval.deadline),
            )
            notifications.notify_on_commit(approval)
            return "escalated"
        Decision.objects.create(
            approval=approval, decision=DecisionChoice.EXPIRE, comment=f"{waited}: {approval.on_timeout}"
        )
        _record(approval, "approval.expired", message=waited, on_timeout=approval.on_timeout)
        if approval.on_timeout == "approve":  # an escalated approval that times out again is rejected
            _approve(approval, decided_by=[], comment=f"approved on timeout: {waited}")
        else:
            _reject(approval, f"expired: {waited}", "ApprovalExpired")
        return "expired"


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def approvals_purge(run_ids: list) -> None:
    """Retention deletes these runs: their approvals and decisions go first (in its transaction)."""
    Decision.objects.filter(approval__run_id__in=run_ids).delete()
    Approval.objects.filter(run_id__in=run_ids).delete()
