"""Admin for schedules: the list an operator reads (cron in words, next fire, last outcome), a form
checked by the same rules as the API, and pause, resume and trigger now as actions."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html

from executions import cron, schedules, selectors
from executions.admin_html import html_table
from executions.exceptions import ScheduleError
from executions.models import Schedule, ScheduleFire

FIRES_SHOWN = 50


def _at(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S.%f}"[:-3] + " UTC" if moment else "-"


def _run_link(run_id):
    if run_id is None:
        return "-"
    return format_html('<a href="{}">{}</a>', reverse("admin:executions_run_change", args=[run_id]), str(run_id)[:8])


class ScheduleForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = [
            "workflow", "name", "cron", "timezone", "input", "overlap", "catchup_window", "paused", "note",
            "start_at", "end_at", "remaining_runs", "jitter",
        ]  # fmt: skip

    def clean(self):
        data = super().clean()
        workflow = data.get("workflow") or getattr(self.instance, "workflow", None)
        if workflow is None or self.errors:
            return data
        values = {field: data.get(field) for field in schedules.FIELDS if field in data}
        try:
            schedules.clean(workflow, values)
        except ScheduleError as exc:
            for problem in exc.problems:
                field = problem.path.split(".")[0].split("[")[0]
                self.add_error(field if field in self.fields else None, ValidationError(problem.message))
        return data


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = ["name", "workflow", "cron_code", "description", "next_fire", "last_outcome", "paused"]
    list_filter = ["paused", "overlap", "workflow"]
    list_select_related = ["workflow"]
    search_fields = ["name", "workflow__slug"]
    readonly_fields = ["description", "next_fire", "fires"]
    actions = ["pause", "resume", "trigger_now"]

    def get_queryset(self, request):
        return selectors.schedule_list()

    @admin.display(description="in words")
    def description(self, obj: Schedule) -> str:
        return cron.describe(obj.cron) if obj.cron else "-"

    @admin.display(description="cron", ordering="cron")
    def cron_code(self, obj: Schedule):
        return format_html('<code style="white-space: nowrap">{}</code>', obj.cron)

    @admin.display(description="next fire (its time zone)", ordering="next_fire_at")
    def next_fire(self, obj: Schedule) -> str:
        """In the schedule's own time zone, where its cron is read: 02:30 means 02:30 there."""
        if obj.paused:
            return "paused" + (f": {obj.note}" if obj.note else "")
        if obj.next_fire_at is None:
            return "none left"
        local = obj.next_fire_at.astimezone(cron.zone(obj.timezone))
        return f"{local:%a %d %b %Y, %H:%M} ({obj.timezone}, UTC{local:%z})"

    @admin.display(description="last outcome")
    def last_outcome(self, obj: Schedule) -> str:
        return getattr(obj, "last_outcome", None) or "-"

    @admin.display(description=f"fires (the latest {FIRES_SHOWN}; all: GET /api/schedules/{{id}}/fires/)")
    def fires(self, obj: Schedule):
        rows = ScheduleFire.objects.filter(schedule=obj)[:FIRES_SHOWN] if obj.pk else []
        return html_table(
            ["nominal time", "fired at", "outcome", "policy", "run", "message"],
            (
                (_at(f.nominal_time), _at(f.fired_at), f.outcome, f.overlap, _run_link(f.run_id), f.message)
                for f in rows
            ),
        )

    def save_model(self, request, obj, form, change):
        values = {field: form.cleaned_data.get(field) for field in schedules.FIELDS}
        saved = schedules.schedule_save(
            workflow=form.cleaned_data["workflow"], values=values, schedule=obj if change else None
        )
        obj.pk = saved.pk

    @admin.action(description="Pause the selected schedules", permissions=["change"])
    def pause(self, request, queryset):
        for schedule in queryset:
            schedules.schedule_pause(schedule=schedule, note=f"paused by {request.user.get_username()}")
        self.message_user(request, f"{queryset.count()} schedule(s) paused.", messages.SUCCESS)

    @admin.action(description="Resume the selected schedules", permissions=["change"])
    def resume(self, request, queryset):
        for schedule in queryset:
            schedules.schedule_resume(schedule=schedule)
        self.message_user(request, f"{queryset.count()} schedule(s) resumed.", messages.SUCCESS)

    @admin.action(description="Trigger the selected schedules now")
    def trigger_now(self, request, queryset):
        if not request.user.has_perm("executions.trigger_schedule"):
            self.message_user(request, "You need the permission executions.trigger_schedule.", messages.ERROR)
            return
        for schedule in queryset.select_related("workflow"):
            fire = schedules.schedule_trigger(schedule=schedule)
            self.message_user(request, f"{schedule.name}: {fire.outcome}", messages.INFO)
