"""Admin for runs and steps: read-only pages, colored statuses, cancel and retry as actions."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import Max, Min, Q, QuerySet
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from executions import admin_logs, concurrency, metrics_page
from executions.admin_html import html_table
from executions.exceptions import InvalidTransitionError
from executions.models import Run, RunEvent, StepRun
from executions.run_page import PALETTE, page_context, run_state, step_states
from executions.selectors import parse_run_id
from executions.services import run_cancel, run_retry
from executions.states import RUN_UNFINISHED, RunMove, RunStatus, StepMove, transitions
from workflows.admin import pretty

COLORS = PALETTE  # one palette: the lists' labels, the run page's graph and timeline
EVENTS_SHOWN = 200
PREVIEW_LIMIT = 2_000  # characters of JSON a step's output shows on the run page; the step's page has it all
DETAIL_LIMIT = 20_000  # characters of input, output or traceback in a graph node's panel
BRANCHES_PER_PAGE = 25
VIEW_PERMISSION = "executions.view_run"
CANCEL_PERMISSION = "executions.cancel_run"
EVENT_KINDS = sorted(
    {move.event for move in transitions(StepMove) + transitions(RunMove) if move.event}
    | {"run.queued", "step.throttled", "approval.requested", "approval.decided", "approval.expired"}
    | {"approval.escalated"}
)
RETRY_PERMISSION = "executions.retry_run"
RETRYABLE = frozenset({RunStatus.FAILED, RunStatus.CANCELLED})
HEX_DIGITS = re.compile(r"[0-9a-f]+")
CANCEL_SHOWN = 50  # runs listed by name on the cancel confirmation page


def colored(status: str):
    return format_html(
        '<b class="cf-status" data-status="{}" style="color: {}">{}</b>', status, COLORS.get(status, "#000"), status
    )


def clipped(value, limit: int, whole_at: str):
    """`pretty(value)` when its JSON is short; else its first `limit` characters and a link to the whole."""
    text = json.dumps(value, ensure_ascii=False)
    if len(text) <= limit:
        return pretty(value)
    return format_html(
        "<pre style='white-space: pre-wrap; margin: 0'>{} …</pre><p>{} characters: <a href=\"{}\">the whole</a></p>",
        text[:limit], f"{len(text):,}", whole_at,
    )  # fmt: skip


def id_prefix_range(term: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The lowest and highest UUID starting with `term` (hex digits, dashes ignored), or None."""
    digits = term.replace("-", "").lower()
    if not digits or len(digits) > 32 or not HEX_DIGITS.fullmatch(digits):
        return None
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


class IndexedDateRangeQuerySet(QuerySet):
    """Date-hierarchy choices from MIN/MAX of the field (two index look-ups), not a DISTINCT scan.

    Django's date hierarchy runs `SELECT DISTINCT trunc(created_at)` over every matching row on each
    page load (0.4 s at 100,000 runs on SQLite). This lists every year, month or day between the
    first and the last run instead, so a day without runs may appear; the page stays fast at any size.
    """

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        bounds = self.aggregate(first=Min(field_name), last=Max(field_name))
        if bounds["first"] is None:
            return []
        zone = tzinfo or timezone.get_current_timezone()
        first, last = (timezone.localtime(bounds[key], zone) for key in ("first", "last"))
        steps, current = [], first.replace(hour=0, minute=0, second=0, microsecond=0)
        if kind in ("month", "year"):
            current = current.replace(day=1)
        if kind == "year":
            current = current.replace(month=1)
        while current <= last:
            steps.append(current)
            if kind == "day":
                current = (current + timedelta(days=1)).replace(hour=0)
            elif kind == "month":
                current = current.replace(year=current.year + current.month // 12, month=current.month % 12 + 1)
            else:
                current = current.replace(year=current.year + 1)
        return steps if order == "ASC" else steps[::-1]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Status is never edited by hand: operators act through the services (actions)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def precise(moment) -> str:
    """A time to the millisecond, in the current time zone: steps last milliseconds."""
    if moment is None:
        return "-"
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def seconds_between(start, end) -> str:
    if start is None or end is None:
        return "-"
    return f"{(end - start).total_seconds():.3f} s"


def safe_next(request) -> str:
    """The posted `next` when it is a page of this site; "" otherwise (a javascript: URL, another host)."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return ""


def branch_row(branch: StepRun) -> tuple:
    link = reverse("admin:executions_steprun_change", args=[branch.pk])
    return branch, colored(branch.status), link, seconds_between(branch.started_at, branch.finished_at)


class StepInline(admin.TabularInline):
    model = StepRun
    verbose_name_plural = "steps"
    fields = [
        "step_link",
        "status_colored",
        "attempts",
        "branches",
        "error_type",
        "queued",
        "started",
        "finished",
        "duration",
        "output_preview",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).filter(branch_index__isnull=True).order_by("id")

    @admin.display(description="step")
    def step_link(self, obj):
        """The step's page holds its input, output and error in full."""
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:executions_steprun_change", args=[obj.pk]), obj.step_id
        )

    @admin.display(description="status")
    def status_colored(self, obj):
        return colored(obj.status)

    @admin.display(description="branches")
    def branches(self, obj):
        if obj.branch_count is None:
            return "-"
        url = (
            reverse("admin:executions_steprun_changelist")
            + "?"
            + urlencode({"run": obj.run_id, "step_id": obj.step_id})
        )
        return format_html('<a href="{}">{}/{} done</a>', url, obj.branches_done, obj.branch_count)

    @admin.display(description="queued")
    def queued(self, obj):
        return precise(obj.queued_at)

    @admin.display(description="started")
    def started(self, obj):
        return precise(obj.started_at)

    @admin.display(description="finished")
    def finished(self, obj):
        return precise(obj.finished_at)

    @admin.display(description="duration")
    def duration(self, obj):
        return seconds_between(obj.started_at, obj.finished_at)

    @admin.display(description="output")
    def output_preview(self, obj):
        if obj.output is None:
            return "-"
        return clipped(obj.output, PREVIEW_LIMIT, reverse("admin:executions_steprun_change", args=[obj.pk]))

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ["short_id", "workflow", "version_number", "status_colored", "created_at", "duration", "started_by"]
    list_filter = ["status", "workflow"]
    list_select_related = ["workflow", "version"]
    search_fields = ["id", "idempotency_key"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["cancel_runs", "retry_runs"]
    inlines = [StepInline]
    fields = [
        "id", "workflow", "version_number", "status_colored", "pending_reason", "started_by", "idempotency_key",
        "schedule", "nominal_time", "created", "started", "finished", "duration", "input_pretty", "output_pretty",
        "error_pretty", "events",
    ]  # fmt: skip
    readonly_fields = fields

    def get_queryset(self, request):
        runs = (
            super()
            .get_queryset(request)
            .select_related("workflow", "version")
            .defer("input", "output", "version__definition")
        )
        return IndexedDateRangeQuerySet(model=Run, query=runs.query, using=runs.db)

    def get_search_results(self, request, queryset, search_term):
        """A run id, or its first characters (the 8 the list shows), or an idempotency key.

        A prefix is a range of UUIDs (prefix padded with 0s to prefix padded with fs), which both
        SQLite (hex text) and PostgreSQL (uuid) answer from the primary key's index: no LIKE scan.
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        matches = Q(idempotency_key=term)
        prefix = id_prefix_range(term)
        if prefix is not None:
            matches |= Q(pk__gte=prefix[0], pk__lte=prefix[1])
        return queryset.filter(matches), False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="run", ordering="id")
    def short_id(self, obj):
        return format_html('<span data-run="{}">{}</span>', obj.pk, str(obj.pk)[:8])  # the live list finds rows by it

    @admin.display(description="waiting for")
    def pending_reason(self, obj):
        return concurrency.pending_reason(obj) or "-"

    @admin.display(description="version", ordering="version__number")
    def version_number(self, obj):
        return obj.version.number

    @admin.display(description="status", ordering="status")
    def status_colored(self, obj):
        return colored(obj.status)

    @admin.display(description="duration")
    def duration(self, obj):
        return seconds_between(obj.started_at, obj.finished_at)

    @admin.display(description="created at")
    def created(self, obj):
        return precise(obj.created_at)

    @admin.display(description="started at")
    def started(self, obj):
        return precise(obj.started_at)

    @admin.display(description="finished at")
    def finished(self, obj):
        return precise(obj.finished_at)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The run page's buttons: the list's actions for this one run, posted with a CSRF token.

        Cancel goes through the same confirmation page as on the list; both come back here.
        """
        run = self.get_object(request, object_id)
        buttons = []
        if run is not None:
            if run.status in RUN_UNFINISHED and request.user.has_perm(CANCEL_PERMISSION):
                buttons.append(("cancel_runs", "Cancel this run…"))
            if run.status in RETRYABLE and request.user.has_perm(RETRY_PERMISSION):
                buttons.append(("retry_runs", "Retry this run"))
        context = {**(extra_context or {}), "run_buttons": buttons}
        if run is not None:
            context.update(page_context(run))
        return super().change_view(request, object_id, form_url, extra_context=context)

    def changelist_view(self, request, extra_context=None):
        """The list follows its runs' statuses over /ws/runs/ (executions/static/chordflow/runs.js)."""
        context = {**(extra_context or {}), "palette": PALETTE}
        return super().changelist_view(request, extra_context=context)

    def get_urls(self):
        view = self.admin_site.admin_view
        own = [
            path("metrics/", view(self.metrics_view), name="executions_run_metrics"),
            path("<path:object_id>/progress/", view(self.progress_view), name="executions_run_progress"),
            path("<path:object_id>/step/<str:step_id>/", view(self.step_view), name="executions_run_step"),
        ]
        return own + super().get_urls()

    def metrics_view(self, request):
        """The metrics page (executions.metrics_page): ?range=hour|day|week&workflow=<slug>."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return metrics_page.metrics_response(request, self.admin_site.each_context(request), self.opts)

    def _viewable(self, request, object_id) -> Run:
        run = self.get_object(request, object_id)
        if run is None or not self.has_view_permission(request, run):
            raise Http404("no such run")
        return run

    def progress_view(self, request, object_id):
        """The run's and its steps' statuses and branch counts, for the live page to refresh (JSON)."""
        run = self._viewable(request, object_id)
        return JsonResponse({"run": run_state(run), "steps": step_states(run)})

    def step_view(self, request, object_id, step_id):
        """A graph node's panel: the step's input, output, error and traceback, and its branches by page."""
        run = self._viewable(request, object_id)
        row = StepRun.objects.filter(run=run, step_id=step_id, branch_index__isnull=True).first()
        if row is None:
            raise Http404("no such step in this run")
        try:
            page = max(1, min(int(request.GET.get("page", 1)), 10**6))
        except ValueError:
            page = 1
        whole = reverse("admin:executions_steprun_change", args=[row.pk])
        start = (page - 1) * BRANCHES_PER_PAGE
        branches = list(
            StepRun.objects.filter(run=run, step_id=step_id, branch_index__isnull=False)
            .order_by("branch_index")
            .only("pk", "branch_index", "status", "attempts", "error_type", "started_at", "finished_at")[
                start : start + BRANCHES_PER_PAGE + 1
            ]
        )
        context = {
            "row": row,
            "whole": whole,
            "input": clipped(row.input, DETAIL_LIMIT, whole),
            "output": "-" if row.output is None else clipped(row.output, DETAIL_LIMIT, whole),
            "traceback": row.error_traceback[:DETAIL_LIMIT],
            "traceback_clipped": len(row.error_traceback) > DETAIL_LIMIT,
            "branches": [branch_row(branch) for branch in branches[:BRANCHES_PER_PAGE]],
            "page": page,
            "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if len(branches) > BRANCHES_PER_PAGE else None,
            "branch_count": f"{row.branch_count:,}" if row.branch_count is not None else None,
            "first_branch": start,
            "last_branch": start + min(len(branches), BRANCHES_PER_PAGE) - 1,
            **admin_logs.panel_context(run, row),
        }  # fmt: skip
        return TemplateResponse(request, "admin/executions/run/step_panel.html", context)

    @admin.display(description="input")
    def input_pretty(self, obj):
        return pretty(obj.input)

    @admin.display(description="output")
    def output_pretty(self, obj):
        return pretty(obj.output)

    @admin.display(description="error")
    def error_pretty(self, obj):
        return pretty(obj.error) if obj.error else "-"

    @admin.display(description="events")
    def events(self, obj):
        """The latest events, oldest first: how the run ended is what one looks for; all are a link away."""
        total = RunEvent.objects.filter(run=obj).count()
        rows = reversed(RunEvent.objects.filter(run=obj).order_by("-id")[:EVENTS_SHOWN])
        every = reverse("admin:executions_runevent_changelist") + "?" + urlencode({"run": obj.pk})
        if total > EVENTS_SHOWN:
            heading = format_html('the latest {} of {}: <a href="{}">all events</a>', EVENTS_SHOWN, total, every)
        else:
            heading = format_html('{} events (<a href="{}">as a list</a>)', total, every)
        table = html_table(
            ["at", "event", "step", "branch", "message"],
            (
                (
                    precise(e.created_at)[11:],
                    e.kind,
                    e.step_id,
                    "" if e.branch_index is None else e.branch_index,
                    e.message,
                )
                for e in rows
            ),
            table_id="cf-events",  # the live page appends new events to it
        )
        return format_html("<p>{}</p>{}", heading, table)

    def _act(self, request, queryset, service, verb: str, permission: str):
        if not request.user.has_perm(permission):
            self.message_user(request, f"You need the permission {permission}.", messages.ERROR)
            return self._back(request)
        done = 0
        for run_id in queryset.values_list("pk", flat=True):
            try:
                service(run_id=run_id, by=f"user:{request.user.get_username()}")
                done += 1
            except InvalidTransitionError as exc:
                self.message_user(request, f"Run {run_id}: {exc}", messages.WARNING)
        if done:
            self.message_user(request, f"{done} run(s) {verb}.", messages.SUCCESS)
        return self._back(request)

    def _back(self, request):
        """Back to the page the button was on (a run's page), or to the list."""
        target = safe_next(request)
        return HttpResponseRedirect(target) if target else None

    @admin.action(description="Cancel the selected runs")
    def cancel_runs(self, request, queryset):
        """Asks first, on a page of its own (as Django's delete does); cancels once that page is posted.

        The run page's button comes here too, with `next` to go back to it."""
        if request.POST.get("post") != "yes" and request.user.has_perm(CANCEL_PERMISSION):
            context = {
                **self.admin_site.each_context(request),
                "title": "Cancel runs: are you sure?",
                "opts": self.model._meta,
                "count": queryset.count(),
                "shown": Run.objects.filter(pk__in=queryset.values("pk")).select_related("workflow")[:CANCEL_SHOWN],
                "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
                "select_across": request.POST.get("select_across") == "1",
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "grace": settings.CHORDFLOW_CANCEL_GRACE,
                "next": safe_next(request) or reverse("admin:executions_run_changelist"),
            }
            return TemplateResponse(request, "admin/executions/run/cancel_confirmation.html", context)
        return self._act(request, queryset, run_cancel, "cancelled", CANCEL_PERMISSION)

    @admin.action(description="Retry the selected runs (failed or cancelled)")
    def retry_runs(self, request, queryset):
        return self._act(request, queryset, run_retry, "retried", RETRY_PERMISSION)


class RunFilter(admin.SimpleListFilter):
    """Rows of one run (`?run=<uuid>`): the link from a run's page; not a list of every run."""

    title = "run"
    parameter_name = "run"

    def lookups(self, request, model_admin):
        run_id = parse_run_id(self.value() or "")
        return [(self.value(), str(run_id)[:8])] if run_id else []

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        run_id = parse_run_id(self.value())
        return queryset.filter(run_id=run_id) if run_id else queryset.none()


class KindFilter(admin.SimpleListFilter):
    """The event kinds the engine records, listed from the code: no SELECT DISTINCT over every event."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [(kind, kind) for kind in EVENT_KINDS]

    def queryset(self, request, queryset):
        return queryset.filter(kind=self.value()) if self.value() else queryset


@admin.register(RunEvent)
class RunEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "run_link", "kind", "step_id", "branch_index", "message"]
    list_filter = [RunFilter, KindFilter]
    show_full_result_count = False
    list_per_page = 500
    ordering = ["id"]
    fields = ["run", "at", "kind", "step_id", "branch_index", "message", "data_pretty"]
    readonly_fields = fields

    def has_module_permission(self, request) -> bool:
        return False  # reached from a run's page, not from the index

    def has_view_permission(self, request, obj=None) -> bool:
        """A run's events are part of the run: whoever may view runs may read them (the run page links here)."""
        return request.user.has_perm(VIEW_PERMISSION) or super().has_view_permission(request, obj)

    @admin.display(description="at", ordering="id")
    def at(self, obj):
        return precise(obj.created_at)

    @admin.display(description="run")
    def run_link(self, obj):
        url = reverse("admin:executions_run_change", args=[obj.run_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.run_id)[:8])

    @admin.display(description="data")
    def data_pretty(self, obj):
        return pretty(obj.data)


@admin.register(StepRun)
class StepRunAdmin(ReadOnlyAdmin):
    list_display = [
        "step_id",
        "branch_index",
        "run_link",
        "workflow",
        "status_colored",
        "attempts",
        "error_type",
        "started_at",
        "finished_at",
    ]
    list_filter = [RunFilter, "status", "step_id", "run__workflow"]
    list_select_related = ["run__workflow"]
    search_fields = ["step_id"]
    show_full_result_count = False
    fields = [
        "run", "step_id", "branch_index", "status", "attempts", "task", "queued_at", "started_at", "finished_at",
        "next_retry_at", "input_pretty", "item_pretty", "output_pretty", "error_type", "error_message",
        "error_traceback", "log",
    ]  # fmt: skip
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("input", "output", "item", "error_traceback")

    @admin.display(description="run")
    def run_link(self, obj):
        url = reverse("admin:executions_run_change", args=[obj.run_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.run_id)[:8])

    @admin.display(description="Celery task")
    def task(self, obj):
        """The task's id, linked to Flower's page for it when CHORDFLOW_FLOWER_URL is set."""
        flower = settings.CHORDFLOW_FLOWER_URL.rstrip("/")
        if not obj.task_id or not flower:
            return obj.task_id or "-"
        return format_html('<a href="{}/task/{}">{}</a> (in Flower)', flower, obj.task_id, obj.task_id)

    @admin.display(description="workflow")
    def workflow(self, obj):
        return obj.run.workflow.slug

    @admin.display(description="status", ordering="status")
    def status_colored(self, obj):
        return colored(obj.status)

    @admin.display(description="input")
    def input_pretty(self, obj):
        return pretty(obj.input)

    @admin.display(description="item")
    def item_pretty(self, obj):
        return pretty(obj.item)

    @admin.display(description="output")
    def output_pretty(self, obj):
        return pretty(obj.output)

    @admin.display(description="log")
    def log(self, obj):
        return admin_logs.step_run_log(obj)


from executions import admin_beat, admin_schedules, admin_workflows  # noqa: E402, F401  (register their admins)
