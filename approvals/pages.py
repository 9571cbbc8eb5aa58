"""HTML pages for approvers outside the admin: the inbox, and the decision page that emails link to."""

from __future__ import annotations

from http import HTTPStatus

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from approvals import selectors, services
from approvals.exceptions import ApprovalConflictError, NotAnApproverError
from approvals.models import Approval, ApprovalKind, ApprovalStatus

CHOICES = {ApprovalKind.APPROVAL: ("approve", "reject"), ApprovalKind.ESCALATION: ("retry", "skip", "fail")}
COMMENT_MAX_LENGTH = 10_000  # as in the REST API


class DecisionForm(forms.Form):
    decision = forms.ChoiceField()
    comment = forms.CharField(
        required=False, max_length=COMMENT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 4, "cols": 60})
    )

    def __init__(self, *args, choices: tuple[str, ...], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        choose = f"Choose one of: {', '.join(choices)}."
        field = self.fields["decision"]
        field.choices = [(choice, choice) for choice in choices]
        field.error_messages = {"required": choose, "invalid_choice": choose}


@login_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    pending = selectors.approval_list(user=request.user, status=ApprovalStatus.PENDING, mine=True)
    return render(request, "approvals/inbox.html", {"approvals": pending[:200]})


@login_required
@require_http_methods(["GET", "POST"])
def decide(request: HttpRequest, approval_id: int) -> HttpResponse:
    """Only those who may decide see the page; a settled approval shows its outcome and no buttons."""
    approval = get_object_or_404(Approval.objects.select_related("run__workflow"), pk=approval_id)
    refusal = selectors.decision_refusal(request.user, approval)
    if refusal:
        return forbidden(request, approval, refusal)
    choices = CHOICES[approval.kind]
    form = DecisionForm(request.POST if request.method == "POST" else None, choices=choices)
    status = HTTPStatus.OK
    if form.is_bound:
        status = HTTPStatus.BAD_REQUEST
        if form.is_valid():
            decision, comment = form.cleaned_data["decision"], form.cleaned_data["comment"]
            try:
                apply_decision(approval, request.user, decision, comment)
            except NotAnApproverError as exc:  # the permission went away since the page was shown
                return forbidden(request, approval, str(exc))
            except ApprovalConflictError as exc:
                form.add_error(None, f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
                status = HTTPStatus.CONFLICT
            else:
                messages.success(request, f"Recorded: {decision}. The run continues from here.")
                return redirect(request.path)
    context = {
        "approval": approval,
        "form": form,
        "choices": choices,
        "decisions": approval.decisions.order_by("id"),
        "pending": approval.status == ApprovalStatus.PENDING,
    }
    return render(request, "approvals/decide.html", context, status=status)


def apply_decision(approval: Approval, user, decision: str, comment: str) -> None:
    if approval.kind == ApprovalKind.APPROVAL:
        services.approval_decide(approval_id=approval.pk, user=user, decision=decision, comment=comment)
    else:
        services.escalation_resolve(approval_id=approval.pk, user=user, decision=decision, comment=comment)


def forbidden(request: HttpRequest, approval: Approval, refusal: str) -> HttpResponse:
    context = {"approval": approval, "refusal": refusal}
    return render(request, "approvals/forbidden.html", context, status=HTTPStatus.FORBIDDEN)
