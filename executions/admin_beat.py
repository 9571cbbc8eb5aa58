"""Celery's admin pages, trimmed: the engine's periodic tasks are read-only, the empty result pages hidden."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import GroupResult, TaskResult

# The entries beat creates from CELERY_BEAT_SCHEDULE: the sweep, approval expiry and the schedule tick.
ENGINE_TASKS = frozenset(settings.CELERY_BEAT_SCHEDULE)
WARNING = (
    "{names}: the engine's own periodic tasks, read-only here. Disabling or deleting them silently "
    "stops self-healing (lost messages, overdue attempts, stalled runs), approval expiry and cron "
    "schedules; their intervals are settings (CHORDFLOW_SWEEP_INTERVAL, CHORDFLOW_SCHEDULE_TICK)."
)

# Step results live in the database rows and the chords' results in Redis: these tables stay empty.
for model in (TaskResult, GroupResult):
    if admin.site.is_registered(model):
        admin.site.unregister(model)

admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class EnginePeriodicTaskAdmin(PeriodicTaskAdmin):
    """Periodic tasks people add stay editable; the engine's are shown with why they are not."""

    def has_change_permission(self, request, obj=None) -> bool:
        return (obj is None or obj.name not in ENGINE_TASKS) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return (obj is None or obj.name not in ENGINE_TASKS) and super().has_delete_permission(request, obj)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        task = self.get_object(request, object_id) if object_id else None
        if task is not None and task.name in ENGINE_TASKS and request.method == "GET":
            self.message_user(request, WARNING.format(names=task.name), messages.WARNING)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _users_tasks(self, request, queryset):
        engine = sorted(queryset.filter(name__in=ENGINE_TASKS).values_list("name", flat=True))
        if engine:
            self.message_user(request, "Left alone: " + WARNING.format(names=", ".join(engine)), messages.WARNING)
        return queryset.exclude(name__in=ENGINE_TASKS)

    @admin.action(description=PeriodicTaskAdmin.enable_tasks.short_description)
    def enable_tasks(self, request, queryset):
        return super().enable_tasks(request, self._users_tasks(request, queryset))

    @admin.action(description=PeriodicTaskAdmin.disable_tasks.short_description)
    def disable_tasks(self, request, queryset):
        return super().disable_tasks(request, self._users_tasks(request, queryset))

    @admin.action(description=PeriodicTaskAdmin.toggle_tasks.short_description)
    def toggle_tasks(self, request, queryset):
        return super().toggle_tasks(request, self._users_tasks(request, queryset))
