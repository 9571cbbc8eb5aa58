"""REST shapes for approvals and decisions."""

from rest_framework import serializers

from approvals.models import Approval, ApprovalKind, ApprovalStatus, Decision
from config.rest import StrictSerializer


class DecideInput(StrictSerializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)


class ResolveInput(StrictSerializer):
    decision = serializers.ChoiceField(choices=["retry", "skip", "fail"])
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)


class ApprovalFilterInput(serializers.Serializer):
    status = serializers.ChoiceField(choices=ApprovalStatus.choices, required=False)
    kind = serializers.ChoiceField(choices=ApprovalKind.choices, required=False)
    mine = serializers.BooleanField(required=False, default=False, help_text="Only those I may decide.")


class DecisionOutput(serializers.ModelSerializer):
    by = serializers.CharField(source="username", allow_null=True, help_text="Empty for the expiry sweep.")
    at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Decision
        fields = ["decision", "by", "comment", "at"]


class ApprovalOutput(serializers.ModelSerializer):
    run = serializers.UUIDField(source="run_id")
    workflow = serializers.CharField(source="run.workflow.slug")
    step = serializers.CharField(source="step_id")
    decisions = DecisionOutput(many=True, read_only=True)

    class Meta:
        model = Approval
        fields = [
            "id", "kind", "status", "run", "workflow", "step", "message", "required", "deadline", "escalations",
            "error", "outcome", "created_at", "decided_at", "decisions",
        ]  # fmt: skip
