"""Admin for approvals: the inbox, a decision page, and approve/reject as actions."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.html import format_html

from approvals import selectors, services
from approvals.exceptions import ApprovalError
from approvals.models import Approval, ApprovalKind, ApprovalStatus, Decision
from executions.models import StepRun
from workflows.admin import pretty
from workflows.services import version_spec


class MineFilter(admin.SimpleListFilter):
    """Assigned to me by default (what an approver opens the list for); `?mine=all` for anyone's."""

    title = "assigned"
    parameter_name = "mine"

    def lookups(self, request, model_admin):
        return [("1", "to me"), ("all", "to anyone")]

    def choices(self, changelist):
        mine = self.value() in (None, "1")
        for value, label in self.lookup_choices:
            selected = mine if value == "1" else self.value() == value
            query = changelist.get_query_string({self.parameter_name: value})
            yield {"selected": selected, "query_string": query, "display": label}

    def queryset(self, request, queryset):
        if self.value() == "all":
            return queryset
        return queryset.filter(pk__in=Approval.objects.filter(selectors.assigned_to(request.user)).values("pk"))


class StatusFilter(admin.SimpleListFilter):
    """Pending by default: settled approvals are the audit record, looked up on purpose (`?status=all`)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [*ApprovalStatus.choices, ("all", "all")]

    def choices(self, changelist):
        for value, label in self.lookup_choices:
            current = self.value() or ApprovalStatus.PENDING
            query = changelist.get_query_string({self.parameter_name: value})
            yield {"selected": current == value, "query_string": query, "display": label}

    def queryset(self, request, queryset):
        if self.value() == "all":
            return queryset
        return queryset.filter(status=self.value() or ApprovalStatus.PENDING)


class DecisionInline(admin.TabularInline):
    model = Decision
    verbose_name_plural = "decisions (audit log)"
    fields = ["created_at", "username", "decision", "comment"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


QUESTION_SHOWN = 300  # characters of the message in the list; the decide page shows it in full


class DecideForm(forms.Form):
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), required=False)


@admin.register(Approval)
class ApprovalAdmin(admin.ModelAdmin):
    list_display = [
        "id", "decide_link", "question", "workflow", "step_id", "run_link", "kind", "status", "created_at", "deadline",
    ]  # fmt: skip
    list_filter = [MineFilter, StatusFilter, "kind"]
    list_select_related = ["run__workflow"]
    search_fields = ["step_id"]
    inlines = [DecisionInline]
    actions = ["approve_selected", "reject_selected"]
    fields = [
        "kind", "status", "run_link", "step_id", "message", "required", "users", "groups", "any_resolver", "deadline",
        "escalations", "error", "outcome", "created_at", "decided_at",
    ]  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        """Approvals and their decisions are the audit record: no one deletes them here, superusers included
        (this also removes the bulk delete action)."""
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        # Approvers decide from here even without model permissions; the decision checks who they are.
        return request.user.is_active and request.user.is_staff

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff

    def get_queryset(self, request):
        approvals = super().get_queryset(request)
        if not request.user.has_perm("approvals.view_approval"):
            approvals = approvals.filter(
                pk__in=Approval.objects.filter(selectors.assigned_to(request.user)).values("pk")
            )
        return approvals

    @admin.display(description="workflow")
    def workflow(self, obj):
        return obj.run.workflow.slug

    @admin.display(description="run")
    def run_link(self, obj):
        url = reverse("admin:executions_run_change", args=[obj.run_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.run_id)[:8])

    @admin.display(description="")
    def decide_link(self, obj):
        if obj.status != ApprovalStatus.PENDING:
            return ""
        url = reverse("admin:approvals_approval_decide", args=[obj.pk])
        return format_html('<a class="button" href="{}">Decide</a>', url)

    @admin.display(description="question")
    def question(self, obj):
        text = obj.message if len(obj.message) <= QUESTION_SHOWN else obj.message[:QUESTION_SHOWN] + " …"
        return format_html(
            '<span style="white-space: pre-wrap; display: inline-block; min-width: 16em">{}</span>', text
        )

    def get_urls(self):
        decide = self.admin_site.admin_view(self.decide_view)
        return [path("<int:pk>/decide/", decide, name="approvals_approval_decide"), *super().get_urls()]

    def decide_view(self, request, pk: int):
        approval = get_object_or_404(self.get_queryset(request), pk=pk)
        form = DecideForm(request.POST or None)
        choices = ["approve", "reject"] if approval.kind == ApprovalKind.APPROVAL else ["retry", "skip", "fail"]
        if request.method == "POST" and form.is_valid():
            decision = request.POST.get("decision")
            if decision in choices:
                if self._apply(request, approval, decision, form.cleaned_data["comment"]):
                    return redirect("admin:approvals_approval_change", approval.pk)
            else:
                form.add_error(None, f"choose one of: {', '.join(choices)}")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "approval": approval,
            "form": form,
            "choices": choices,
            "may_decide": selectors.may_decide(request.user, approval),
            "refusal": selectors.decision_refusal(request.user, approval),
            "decisions": approval.decisions.order_by("id"),
            "title": f"Decide: {approval.run.workflow.slug} / {approval.step_id}",
            **what_led_here(approval),
        }
        return render(request, "admin/approvals/decide.html", context)

    def _apply(self, request, approval: Approval, decision: str, comment: str) -> bool:
        try:
            if decision in ("approve", "reject"):
                services.approval_decide(approval_id=approval.pk, user=request.user, decision=decision, comment=comment)
            else:
                services.escalation_resolve(
                    approval_id=approval.pk, user=request.user, decision=decision, comment=comment
                )
        except ApprovalError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return False
        self.message_user(request, f"Approval {approval.pk}: {decision} recorded.", messages.SUCCESS)
        return True

    def _decide_selected(self, request, queryset, decision: str) -> None:
        for approval in queryset:
            if approval.kind == ApprovalKind.APPROVAL:
                self._apply(request, approval, decision, comment="")
            else:
                self.message_user(
                    request, f"Approval {approval.pk} is an escalation: open it to resolve it.", messages.WARNING
                )

    @admin.action(description="Approve the selected approvals")
    def approve_selected(self, request, queryset):
        self._decide_selected(request, queryset, "approve")

    @admin.action(description="Reject the selected approvals")
    def reject_selected(self, request, queryset):
        self._decide_selected(request, queryset, "reject")


def what_led_here(approval: Approval) -> dict:
    """The run's input, the step's params and the outputs of the steps it depends on, as HTML."""
    step = version_spec(approval.run.version).step(approval.step_id)
    rows = {row.step_id: row for row in StepRun.objects.filter(run_id=approval.run_id, branch_index__isnull=True)}
    upstream = [(step_id, pretty(rows[step_id].output)) for step_id in step.depends_on if step_id in rows]
    params = rows[approval.step_id].input if approval.step_id in rows else None
    return {"run_input": pretty(approval.run.input), "step_params": pretty(params), "upstream": upstream}
