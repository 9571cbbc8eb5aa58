"""Admin for workflows: edit a definition (validated as the API does), see versions.

Starting a run is added by the executions app (executions/admin_workflows.py): dependencies point one way.
"""

from __future__ import annotations

import json

import yaml
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html

from workflows.definition import parse_definition
from workflows.exceptions import DefinitionError, InputValidationError
from workflows.models import Workflow, WorkflowVersion
from workflows.selectors import workflow_list
from workflows.services import workflow_save
from workflows.yaml_load import load_definition

COLLAPSE_OVER_CHARS = 2_000  # as indented JSON
COLLAPSE_OVER_LINES = 30  # a list of 40 numbers is short but a screen tall
PREVIEW_CHARS = 120


def pretty(value) -> str:
    """A JSON value, escaped; a large one folded in a <details> (no script needed) showing its size
    and a preview, so that a for_each's 2,000 outputs do not make the page 85,000 px tall."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    block = format_html("<pre style='white-space: pre-wrap; margin: 0'>{}</pre>", text)
    if len(text) <= COLLAPSE_OVER_CHARS and text.count("\n") < COLLAPSE_OVER_LINES:
        return block
    compact = json.dumps(value, ensure_ascii=False)
    preview = compact if len(compact) <= PREVIEW_CHARS else compact[:PREVIEW_CHARS] + " …"
    return format_html(
        "<details><summary>{}, {} characters: <code>{}</code></summary>{}</details>", size(value), f"{len(compact):,}",
        preview, block,
    )  # fmt: skip


def size(value) -> str:
    if isinstance(value, list):
        return f"list of {len(value):,} items"
    if isinstance(value, dict):
        return f"object with {len(value):,} keys"
    return type(value).__name__


def problems_error(exc: DefinitionError | InputValidationError) -> ValidationError:
    return ValidationError([str(problem) for problem in exc.problems])


class WorkflowForm(forms.ModelForm):
    definition = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 30, "cols": 100, "style": "font-family: monospace"}),
        help_text="YAML or JSON. Saving a changed definition makes a new version; runs keep theirs.",
    )

    class Meta:
        model = Workflow
        fields = ["slug", "active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["slug"].disabled = True
            latest = self.instance.latest_version()
            if latest is not None:
                self.initial["definition"] = yaml.safe_dump(latest.definition, sort_keys=False, allow_unicode=True)

    def clean_definition(self):
        try:
            definition = load_definition(self.cleaned_data["definition"])
        except yaml.YAMLError as exc:
            raise ValidationError(f"not valid YAML or JSON: {exc}") from None
        try:
            parse_definition(definition)
        except DefinitionError as exc:
            raise problems_error(exc) from None
        return definition


class VersionInline(admin.TabularInline):
    model = WorkflowVersion
    fields = ["number", "created_at", "created_by", "content_hash"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    form = WorkflowForm
    list_display = ["slug", "name", "active", "current_version", "updated_at"]
    list_filter = ["active"]
    search_fields = ["slug", "name"]
    readonly_fields = ["name", "description", "current_definition"]
    inlines = [VersionInline]

    def get_queryset(self, request):
        return workflow_list()

    def get_readonly_fields(self, request, obj=None):
        """Adding: only what one fills in (the name and description come from the definition)."""
        return super().get_readonly_fields(request, obj) if obj is not None else []

    def get_inlines(self, request, obj):
        return super().get_inlines(request, obj) if obj is not None else []

    @admin.display(description="version")
    def current_version(self, obj: Workflow):
        versions = getattr(obj, "current_versions", None)
        return versions[0].number if versions else None

    @admin.display(description="current definition")
    def current_definition(self, obj: Workflow):
        latest = obj.latest_version() if obj.pk else None
        return pretty(latest.definition) if latest else "-"

    def save_model(self, request, obj, form, change):
        saved, version, created = workflow_save(
            slug=obj.slug, definition=form.cleaned_data["definition"], created_by=request.user
        )
        if saved.active != obj.active:
            Workflow.objects.filter(pk=saved.pk).update(active=obj.active)
        obj.pk = saved.pk
        obj.refresh_from_db()
        state = f"version {version.number} saved" if created else f"unchanged, still version {version.number}"
        messages.info(request, f"{saved.slug}: {state}")


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(admin.ModelAdmin):
    list_display = ["workflow", "number", "created_at", "created_by"]
    list_select_related = ["workflow", "created_by"]
    list_filter = ["workflow"]
    readonly_fields = ["workflow", "number", "content_hash", "created_at", "created_by", "definition_pretty"]
    exclude = ["definition"]

    @admin.display(description="definition")
    def definition_pretty(self, obj):
        return pretty(obj.definition)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # versions are immutable
