"""Reads for approvals: who may decide, and each person's inbox."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from approvals.models import Approval


def may_decide(user, approval: Approval) -> bool:
    """The listed users, members of the listed groups, staff for staff escalations, or a superuser."""
    if user is None or not user.is_authenticated:
        return False
    if user.is_superuser or (approval.staff and user.is_staff):
        return True
    if approval.users.filter(pk=user.pk).exists():
        return True
    return approval.groups.filter(pk__in=user.groups.values("pk")).exists()


def assigned_to(user) -> Q:
    condition = Q(users=user) | Q(groups__in=user.groups.all())
    if user.is_staff:
        condition |= Q(staff=True)
    return condition


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
