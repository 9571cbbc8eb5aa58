"""Email the people who may decide an approval, after commit, with a link to its decision page."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.urls import reverse

from approvals.models import RESOLVE_ESCALATION, Approval, ApprovalKind

logger = logging.getLogger(__name__)
PERMISSION_BACKEND = "django.contrib.auth.backends.ModelBackend"


def recipients(approval: Approval) -> list[str]:
    """Those who may decide it: for an escalation, only holders of approvals.resolve_escalation."""
    users = get_user_model().objects.filter(is_active=True).exclude(email="")
    named = Q(pk__in=approval.users.values("pk")) | Q(groups__in=approval.groups.all())
    if approval.kind == ApprovalKind.ESCALATION:
        # Permissions live in the database (ModelBackend); with django-axes' backend in front, the
        # backend must be named.
        resolvers = get_user_model().objects.with_perm(RESOLVE_ESCALATION, backend=PERMISSION_BACKEND).values("pk")
        users = users.filter(pk__in=resolvers) if approval.any_resolver else users.filter(named, pk__in=resolvers)
    else:
        users = users.filter(named)
    return sorted(set(users.values_list("email", flat=True)))


def decision_url(approval: Approval) -> str:
    """The decision page outside the admin, which approvers who are not staff can open too."""
    return settings.CHORDFLOW_BASE_URL.rstrip("/") + reverse("approvals:decide", args=[approval.pk])


def notify_on_commit(approval: Approval) -> None:
    to = recipients(approval)
    if not to:
        return
    what = "Approval needed" if approval.kind == ApprovalKind.APPROVAL else "Failed step needs a decision"
    subject = f"[Chordflow] {what}: {approval.run.workflow.slug} / {approval.step_id}"
    deadline = f"\nDecide before {approval.deadline:%Y-%m-%d %H:%M %Z}." if approval.deadline else ""
    message = approval.message or "A workflow is waiting for your decision."
    body = f"{message}\n\nDecide here: {decision_url(approval)}{deadline}\n"

    def send() -> None:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, to)
        except Exception:
            logger.warning("could not email the approvers of approval %s", approval.pk, exc_info=True)

    transaction.on_commit(send)
