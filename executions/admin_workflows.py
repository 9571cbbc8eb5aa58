"""The workflow admin, with starting a run: the runtime extends the definitions' admin, so that
workflows needs nothing of executions."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.html import format_html

from executions.exceptions import RunNotAllowedError
from executions.models import Schedule
from executions.services import run_start
from workflows.admin import WorkflowAdmin, pretty, problems_error
from workflows.exceptions import InputValidationError
from workflows.models import Workflow


class StartRunForm(forms.Form):
    input = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80, "style": "font-family: monospace"}),
        initial="{}",
        help_text="The run's input as JSON; it is checked against the workflow's input_schema.",
    )
    idempotency_key = forms.CharField(required=False, max_length=200)

    def clean_input(self):
        try:
            return json.loads(self.cleaned_data["input"])
        except json.JSONDecodeError as exc:
            raise ValidationError(f"not valid JSON: {exc}") from None


class ScheduleInline(admin.TabularInline):
    model = Schedule
    fields = ["name", "cron", "timezone", "overlap", "paused", "next_fire_at"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True


admin.site.unregister(Workflow)


@admin.register(Workflow)
class WorkflowRunsAdmin(WorkflowAdmin):
    list_display = [*WorkflowAdmin.list_display, "start_link"]
    inlines = [*WorkflowAdmin.inlines, ScheduleInline]
    actions = ["start_run"]

    @admin.display(description="")
    def start_link(self, obj: Workflow):
        return format_html('<a href="{}">Start a run</a>', reverse("admin:workflows_workflow_start", args=[obj.pk]))

    def get_urls(self):
        start = self.admin_site.admin_view(self.start_view)
        return [path("<int:pk>/start/", start, name="workflows_workflow_start"), *super().get_urls()]

    @admin.action(description="Start a run of the selected workflow")
    def start_run(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one workflow to start a run of.", messages.WARNING)
            return None
        return redirect("admin:workflows_workflow_start", queryset.get().pk)

    def start_view(self, request, pk: int):
        if not request.user.has_perm("executions.add_run"):
            self.message_user(request, "You need the permission to add runs.", messages.ERROR)
            return redirect("admin:workflows_workflow_changelist")
        workflow = get_object_or_404(Workflow, pk=pk)
        latest = workflow.latest_version()
        definition = latest.definition if latest else {}
        initial = {}
        if "example_input" in definition:
            initial["input"] = json.dumps(definition["example_input"], indent=2, ensure_ascii=False)
        form = StartRunForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            try:
                run, created = run_start(
                    workflow=workflow,
                    input=form.cleaned_data["input"],
                    idempotency_key=form.cleaned_data["idempotency_key"] or None,
                    started_by=f"user:{request.user.get_username()}",
                    created_by=request.user,
                )
            except InputValidationError as exc:
                form.add_error("input", problems_error(exc))
            except RunNotAllowedError as exc:
                form.add_error(None, str(exc))
            else:
                note = "started" if created else "already exists for that idempotency key"
                self.message_user(request, f"Run {run.pk} {note}.", messages.SUCCESS)
                return redirect("admin:executions_run_change", run.pk)
        context = {
            **self.admin_site.each_context(request),
            "workflow": workflow,
            "form": form,
            "opts": self.model._meta,
            "input_schema": pretty(definition["input_schema"]) if "input_schema" in definition else None,
            "has_example": "example_input" in definition,
        }
        context["title"] = f"Start a run of {workflow.slug}"
        return render(request, "admin/workflows/start_run.html", context)
