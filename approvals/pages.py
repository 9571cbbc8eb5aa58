"""HTML pages for approvers outside the admin: the inbox, and the decision page that emails link to."""

from __future__ import annotations

from http import HTTPStatus

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
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


INBOX_SHOWN = 200


@login_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    """What waits for this user's decision, with the decision inline. `?rows=1` gives only the rows:
    the page's script asks for them when the socket says approvals changed, and merges them in."""
    pending = selectors.approval_list(user=request.user, status=ApprovalStatus.PENDING, mine=True)
    approvals = list(pending.order_by("created_at", "pk")[:INBOX_SHOWN])
    for approval in approvals:
        approval.choices = CHOICES[approval.kind]
    template = "approvals/inbox_rows.html" if request.GET.get("rows") else "approvals/inbox.html"
    return render(request, template, {"approvals": approvals, "shown": INBOX_SHOWN})


def wants_json(request: HttpRequest) -> bool:
    """The inbox's script posts the same form and reads the answer as JSON; a browser without it gets pages."""
    return "application/json" in request.headers.get("Accept", "")


def answer(request: HttpRequest, page: HttpResponse, message: str, status: int) -> HttpResponse:
    if wants_json(request):
        return JsonResponse({"ok": status == HTTPStatus.OK, "message": message}, status=status)
    return page


@login_required
@require_http_methods(["GET", "POST"])
def decide(request: HttpRequest, approval_id: int) -> HttpResponse:
    """Only those who may decide see the page; a settled approval shows its outcome and no buttons."""
    approval = get_object_or_404(Approval.objects.select_related("run__workflow"), pk=approval_id)
    refusal = selectors.decision_refusal(request.user, approval)
    if refusal:
        return answer(request, forbidden(request, approval, refusal), refusal, HTTPStatus.FORBIDDEN)
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
                return answer(request, forbidden(request, approval, str(exc)), str(exc), HTTPStatus.FORBIDDEN)
            except ApprovalConflictError as exc:
                form.add_error(None, f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
                status = HTTPStatus.CONFLICT
            else:
                done = f"Recorded: {decision}. The run continues from here."
                if wants_json(request):
                    return JsonResponse({"ok": True, "message": done})
                messages.success(request, done)
                return redirect(request.path)
    context = {
        "approval": approval,
        "form": form,
        "choices": choices,
        "decisions": approval.decisions.order_by("id"),
        "pending": approval.status == ApprovalStatus.PENDING,
    }
    if form.is_bound and wants_json(request):
        return JsonResponse({"ok": False, "message": " ".join(form.non_field_errors() or [
            f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()
        ])}, status=status)  # fmt: skip
    return render(request, "approvals/decide.html", context, status=status)


def apply_decision(approval: Approval, user, decision: str, comment: str) -> None:
    if approval.kind == ApprovalKind.APPROVAL:
        services.approval_decide(approval_id=approval.pk, user=user, decision=decision, comment=comment)
    else:
        services.escalation_resolve(approval_id=approval.pk, user=user, decision=decision, comment=comment)


def forbidden(request: HttpRequest, approval: Approval, refusal: str) -> HttpResponse:
    context = {"approval": approval, "refusal": refusal}
    return render(request, "approvals/forbidden.html", context, status=HTTPStatus.FORBIDDEN)
