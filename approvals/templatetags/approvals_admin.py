"""Template tags for the admin index: how many approvals wait for the signed-in user."""

from django import template

from approvals import selectors
from approvals.models import ApprovalStatus

register = template.Library()


@register.simple_tag
def approvals_waiting(user) -> int:
    """Pending approvals `user` may decide (what the approvals list opens on)."""
    if not user.is_authenticated:
        return 0
    return selectors.approval_list(user=user, status=ApprovalStatus.PENDING, mine=True).count()
