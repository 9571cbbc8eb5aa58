"""REST shapes for schedules and their fires. Fields are checked by the service (one set of rules
for REST, the admin and workflow files); these only describe and render them."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.rest import StrictSerializer
from executions import cron
from executions.models import Schedule, ScheduleFire
from executions.schedules import next_fire_times
from executions.states import Overlap


class ScheduleInput(serializers.Serializer):
    """The documented body; the service names each bad field."""

    workflow = serializers.SlugField(help_text="The workflow's slug (on create only).")
    name = serializers.CharField(max_length=100)
    cron = serializers.CharField(help_text="5 fields, or @hourly, @daily, @weekly, @monthly.")
    timezone = serializers.CharField(required=False, default="UTC", help_text="IANA name.")
    input = serializers.JSONField(required=False, help_text="Validated against the workflow's input_schema.")
    overlap = serializers.ChoiceField(choices=Overlap.choices, required=False, default=Overlap.SKIP)
    catchup_window = serializers.IntegerField(required=False, default=3600, help_text="Seconds.")
    paused = serializers.BooleanField(required=False, default=False)
    note = serializers.CharField(required=False, allow_blank=True)
    start_at = serializers.DateTimeField(required=False, allow_null=True)
    end_at = serializers.DateTimeField(required=False, allow_null=True)
    remaining_runs = serializers.IntegerField(required=False, allow_null=True)
    jitter = serializers.IntegerField(required=False, default=0, help_text="Seconds.")


class PauseInput(StrictSerializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class TriggerInput(StrictSerializer):
    overlap = serializers.ChoiceField(choices=Overlap.choices, required=False, allow_null=True)


class BackfillInput(StrictSerializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    overlap = serializers.ChoiceField(choices=Overlap.choices, required=False, default=Overlap.BUFFER_ALL)


class BackfillOutput(serializers.Serializer):
    count = serializers.IntegerField(help_text="Fires made (times that had fired already are left as they are).")


class FireOutput(serializers.ModelSerializer):
    class Meta:
        model = ScheduleFire
        fields = ["nominal_time", "fired_at", "outcome", "run", "overlap", "message"]


class ScheduleOutput(serializers.ModelSerializer):
    workflow = serializers.CharField(source="workflow.slug")
    description = serializers.SerializerMethodField(help_text='The cron in words: "At 02:30, Monday through Friday".')
    next_fire_times = serializers.SerializerMethodField(help_text="The next 5, with the time zone's offset.")
    last_fire = serializers.SerializerMethodField()

    class Meta:
        model = Schedule
        fields = [
            "id", "workflow", "name", "cron", "description", "timezone", "input", "overlap", "catchup_window",
            "paused", "note", "start_at", "end_at", "remaining_runs", "jitter", "next_fire_times", "last_fire",
            "created_at", "updated_at",
        ]  # fmt: skip

    def get_description(self, schedule: Schedule) -> str:
        return cron.describe(schedule.cron)

    @extend_schema_field(serializers.ListField(child=serializers.DateTimeField()))
    def get_next_fire_times(self, schedule: Schedule) -> list[str]:
        zone = cron.zone(schedule.timezone)
        return [moment.astimezone(zone).isoformat() for moment in next_fire_times(schedule)]

    @extend_schema_field(FireOutput(allow_null=True))
    def get_last_fire(self, schedule: Schedule) -> dict | None:
        """From selectors.with_last_fires when the caller attached it; else read here."""
        fire = schedule.last_fire if hasattr(schedule, "last_fire") else schedule.fires.first()  # newest first
        return FireOutput(fire).data if fire is not None else None
