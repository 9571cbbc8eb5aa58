"""Approvals (a person decides a step) and escalations (an operator resolves a failed step), with decisions."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q


class ApprovalKind(models.TextChoices):
    APPROVAL = "approval"  # an approval step: approve or reject
    ESCALATION = "escalation"  # a step that exhausted its attempts: retry, skip or fail


class ApprovalStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    RESOLVED = "resolved"  # an escalation that an operator resolved
    CANCELLED = "cancelled"  # the run stopped waiting (cancelled) before anyone decided


# Needed to resolve any escalation; holders are the resolvers of escalations that name no one.
RESOLVE_ESCALATION = "approvals.resolve_escalation"


class Approval(models.Model):
    kind = models.CharField(max_length=16, choices=ApprovalKind.choices, default=ApprovalKind.APPROVAL)
    status = models.CharField(max_length=16, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING)
    run = models.ForeignKey("executions.Run", on_delete=models.CASCADE, related_name="approvals")
    step_run = models.ForeignKey("executions.StepRun", on_delete=models.CASCADE, related_name="approvals")
    step_id = models.CharField(max_length=100)
    message = models.TextField(blank=True)
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="approvals_assigned")
    groups = models.ManyToManyField(Group, blank=True, related_name="approvals_assigned")
    any_resolver = models.BooleanField(
        default=False,
        help_text="An escalation that names no one: everyone with approvals.resolve_escalation may resolve it.",
    )
    required = models.PositiveIntegerField(default=1, help_text="Approvals needed; one rejection rejects.")
    timeout = models.FloatField(null=True, blank=True, help_text="Seconds to decide before on_timeout applies.")
    on_timeout = models.CharField(max_length=16, default="reject")
    escalate_to = models.JSONField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    escalations = models.PositiveIntegerField(default=0)
    error = models.JSONField(null=True, blank=True, help_text="Escalations: the failure being escalated.")
    outcome = models.JSONField(null=True, blank=True, help_text="What the step got: the approval's output.")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("resolve_escalation", "Can resolve escalations (retry, skip or fail a failed step)")]
        indexes = [
            models.Index(fields=["status", "deadline"], name="approval_status_deadline"),
            models.Index(fields=["status", "created_at"], name="approval_status_created"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.pk} of {self.step_id} ({self.status})"


class DecisionChoice(models.TextChoices):
    APPROVE = "approve"
    REJECT = "reject"
    RETRY = "retry"
    SKIP = "skip"
    FAIL = "fail"
    EXPIRE = "expire"  # the deadline passed: on_timeout applied (no user)
    ESCALATE = "escalate"  # the deadline passed: reassigned to escalate_to (no user)


class Decision(models.Model):
    """The audit log of an approval: who decided what, when, and why. Never changed."""

    approval = models.ForeignKey(Approval, on_delete=models.CASCADE, related_name="decisions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150, blank=True, help_text="Kept if the user is deleted.")
    decision = models.CharField(max_length=16, choices=DecisionChoice.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["approval", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["approval", "user"],
                condition=Q(user__isnull=False),
                name="decision_one_per_user",
            )
        ]

    def __str__(self) -> str:
        return f"{self.username or 'system'}: {self.decision}"
