"""REST input and output shapes for runs, steps, branches, events and step logs."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.rest import InstantField, StrictSerializer
from executions import concurrency
from executions.models import Run, RunEvent, StepLog, StepRun
from executions.states import RunStatus
from workflows.action_log import LOG_LEVELS


class RunStartInput(StrictSerializer):
    input = serializers.JSONField(required=False, default=dict, help_text="Validated against the input_schema.")
    idempotency_key = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=200,
        help_text="A key already used for this workflow returns that run.",
    )


class ReplayConflictOutput(serializers.Serializer):
    """409 from a start: the run's state does not allow it, or a replayed key whose run the caller may not view."""

    detail = serializers.CharField()
    id = serializers.UUIDField(required=False, help_text="A replay: the run that holds the key.")
    status = serializers.ChoiceField(choices=RunStatus.choices, required=False, help_text="A replay: its status.")


class RunFilterInput(serializers.Serializer):
    workflow = serializers.SlugField(required=False, help_text="A workflow's slug.")
    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    created_after = InstantField(required=False)
    created_before = InstantField(required=False)


class EventFilterInput(serializers.Serializer):
    after = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=2**63 - 1,
        help_text="An event id: only the events after it (a client catching up after a gap or a reconnect).",
    )


class ErrorOutput(serializers.Serializer):
    type = serializers.CharField()
    message = serializers.CharField()


@extend_schema_field(ErrorOutput(allow_null=True))
class StepErrorField(serializers.Field):
    def to_representation(self, row: StepRun):
        if not row.error_type:
            return None
        return {"type": row.error_type, "message": row.error_message}


class BranchCountsOutput(serializers.Serializer):
    count = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())


class StepOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="step_id")
    error = StepErrorField(source="*", allow_null=True)
    branches = serializers.SerializerMethodField(help_text="for_each steps: branch counts by status.")

    class Meta:
        model = StepRun
        fields = [
            "id", "status", "attempts", "output", "error", "queued_at", "started_at", "finished_at",
            "next_retry_at", "branches",
        ]  # fmt: skip

    @extend_schema_field(BranchCountsOutput(allow_null=True))
    def get_branches(self, row: StepRun) -> dict | None:
        if row.branch_count is None:
            return None
        return {"count": row.branch_count, "by_status": getattr(row, "branch_counts", None) or {}}


class BranchOutput(serializers.ModelSerializer):
    index = serializers.IntegerField(source="branch_index")
    error = StepErrorField(source="*", allow_null=True)

    class Meta:
        model = StepRun
        fields = [
            "index", "status", "attempts", "item", "input", "output", "error", "queued_at", "started_at",
            "finished_at", "next_retry_at",
        ]  # fmt: skip


class RunOutput(serializers.ModelSerializer):
    workflow = serializers.CharField(source="workflow.slug")
    version = serializers.IntegerField(source="version.number")
    duration = serializers.SerializerMethodField(help_text="Seconds from start to finish; null until it finishes.")

    class Meta:
        model = Run
        fields = [
            "id", "workflow", "version", "status", "input", "output", "error", "started_by", "idempotency_key",
            "schedule", "nominal_time", "created_at", "started_at", "finished_at", "duration",
        ]  # fmt: skip

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_duration(self, run: Run) -> float | None:
        if run.started_at is None or run.finished_at is None:
            return None
        return round((run.finished_at - run.started_at).total_seconds(), 3)


class RunDetailOutput(RunOutput):
    steps = StepOutput(many=True, source="step_list")
    pending_reason = serializers.SerializerMethodField(
        help_text='Why a pending run waits: "waiting for a concurrency slot: 5 of 5 running for 42".'
    )

    class Meta(RunOutput.Meta):
        fields = [*RunOutput.Meta.fields, "pending_reason", "steps"]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_pending_reason(self, run: Run) -> str | None:
        return concurrency.pending_reason(run)


class BlankAsNullCharField(serializers.CharField):
    def to_representation(self, value):
        return value or None


class EventOutput(serializers.ModelSerializer):
    """The event as its Channels payload carries it (`run`, `status`, `attempt`), with its `data` as recorded."""

    type = serializers.CharField(source="kind")
    run = serializers.UUIDField(source="run_id")
    status = serializers.SerializerMethodField()
    attempt = serializers.SerializerMethodField()
    step = BlankAsNullCharField(source="step_id", allow_null=True, help_text="Null for run events.")
    branch = serializers.IntegerField(source="branch_index", allow_null=True)
    at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = RunEvent
        fields = ["id", "type", "run", "step", "branch", "status", "attempt", "message", "data", "at"]

    def get_status(self, event: RunEvent) -> str | None:
        return event.data.get("status")

    def get_attempt(self, event: RunEvent) -> int | None:
        return event.data.get("attempt")


class LogFilterInput(serializers.Serializer):
    """`context["steps"]`: the run's step ids, so an unknown step is a 400 naming `step`."""

    step = serializers.CharField(required=False, max_length=100, help_text="A step id: only its lines (all branches).")
    level = serializers.ChoiceField(
        choices=LOG_LEVELS, required=False, help_text="The least level: `warning` gives warning and error lines."
    )
    attempt = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    branch = serializers.IntegerField(
        required=False, min_value=0, max_value=2**31 - 1, help_text="A for_each branch's index."
    )
    after = serializers.IntegerField(
        required=False, min_value=0, max_value=2**63 - 1, help_text="A line id: only the lines after it."
    )

    def validate_step(self, value: str) -> str:
        steps = self.context.get("steps")
        if steps is not None and value not in steps:
            raise serializers.ValidationError(f"this run has no step {value!r}")
        return value


class LogOutput(serializers.ModelSerializer):
    run = serializers.UUIDField(source="run_id")
    step = serializers.CharField(source="step_id")
    branch = serializers.IntegerField(source="branch_index", allow_null=True)
    level = serializers.ChoiceField(choices=LOG_LEVELS, source="get_level_display")
    at = serializers.DateTimeField(source="logged_at")
    extra = serializers.DictField(help_text="What the action passed as `extra=`, as JSON.")

    class Meta:
        model = StepLog
        fields = ["id", "run", "step", "branch", "attempt", "level", "at", "message", "extra"]
