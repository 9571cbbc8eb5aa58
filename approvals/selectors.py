"""Reads for approvals: who may decide, and each person's inbox."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Q, QuerySet

from approvals.models import RESOLVE_ESCALATION, Approval, ApprovalKind, ApprovalStatus


def may_resolve_escalations(user) -> bool:
    return user is not None and user.is_authenticated and user.has_perm(RESOLVE_ESCALATION)


def may_decide(user, approval: Approval) -> bool:
    """Approvals: the listed users, members of the listed groups, or a superuser. Escalations: the same
    people (or, when it names no one, anyone) and only with the approvals.resolve_escalation permission."""
    if user is None or not user.is_authenticated:
        return False
    if approval.kind == ApprovalKind.ESCALATION:
        if not may_resolve_escalations(user):
            return False
        if approval.any_resolver:
            return True
    if user.is_superuser:
        return True
    if approval.users.filter(pk=user.pk).exists():
        return True
    return approval.groups.filter(pk__in=user.groups.values("pk")).exists()


def decision_refusal(user, approval: Approval) -> str:
    """Why `user` may not decide `approval`, for a page to show; empty when they may."""
    if may_decide(user, approval):
        return ""
    if approval.kind == ApprovalKind.ESCALATION and not may_resolve_escalations(user):
        return f"Resolving an escalation needs the permission {RESOLVE_ESCALATION}."
    return f"You are not among the approvers of approval {approval.pk}."


def assigned_to(user) -> Q:
    """The approvals `user` may decide, as a filter (the inbox)."""
    named = Q(users=user) | Q(groups__in=user.groups.all())
    if not may_resolve_escalations(user):
        return named & Q(kind=ApprovalKind.APPROVAL)
    return named | Q(kind=ApprovalKind.ESCALATION, any_resolver=True)


def approval_list(
    *, user, status: str | None = None, kind: str | None = None, mine: bool = False
) -> QuerySet[Approval]:
    """Approvals the user may see: those they may decide, or all with the view permission."""
    approvals = Approval.objects.select_related("run__workflow")
    if mine or not user.has_perm("approvals.view_approval"):
        approvals = approvals.filter(pk__in=Approval.objects.filter(assigned_to(user)).values("pk"))
    if status:
        approvals = approvals.filter(status=status)
    if kind:
        approvals = approvals.filter(kind=kind)
    return approvals


def approval_get(*, user, approval_id) -> Approval | None:
    approval = Approval.objects.select_related("run__workflow").filter(pk=approval_id).first()
    if approval is None:
        return None
    if user.has_perm("approvals.view_approval") or may_decide(user, approval):
        return approval
    return None


def approvals_pending_gauge() -> Iterator[tuple[str, dict[str, str], float]]:
    """Pending approvals (and escalations) per workflow, for /metrics (executions.gauges.register_gauge)."""
    rows = (
        Approval.objects.filter(status=ApprovalStatus.PENDING)
        .values_list("run__workflow__slug")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for workflow, count in rows:
        yield "approvals_pending", {"workflow": workflow}, float(count)
