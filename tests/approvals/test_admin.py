"""Approvals in the admin: the inbox, the decision page and the actions."""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from approvals.models import Approval, ApprovalStatus
from executions.services import run_start
from executions.states import StepStatus
from tests.support.runs import step_row, steps, workflow

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending(client):
    staff("alice")
    wf = workflow(
        steps(
            {"id": "ok", "type": "approval", "params": {"approvers": {"users": ["alice"]}}},
            {"id": "after", "action": "echo", "depends_on": ["ok"]},
            defaults={"queue": "nobody-reads-this"},
        )
    )
    run, _ = run_start(workflow=wf)
    return run, Approval.objects.get(run=run)


def staff(name: str) -> User:
    return User.objects.create_user(name, password="pw", is_staff=True)


def test_an_approver_decides_on_the_decision_page(client, pending):
    run, approval = pending
    client.force_login(User.objects.get(username="alice"))
    inbox = client.get(reverse("admin:approvals_approval_changelist") + "?mine=1")
    assert (
        inbox.status_code == 200
        and reverse("admin:approvals_approval_decide", args=[approval.pk]) in inbox.content.decode()
    )
    page = client.get(reverse("admin:approvals_approval_decide", args=[approval.pk]))
    assert page.status_code == 200 and 'value="approve"' in page.content.decode()
    done = client.post(
        reverse("admin:approvals_approval_decide", args=[approval.pk]), {"decision": "approve", "comment": "yes"}
    )
    assert done.status_code == 302
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED
    assert step_row(run, "ok").status == StepStatus.SUCCEEDED
    assert client.get(reverse("admin:approvals_approval_change", args=[approval.pk])).status_code == 200


def test_someone_else_sees_no_buttons_and_the_action_refuses(client, pending, admin_user):
    _run, approval = pending
    client.force_login(staff("mallory"))
    assert client.get(reverse("admin:approvals_approval_decide", args=[approval.pk])).status_code == 404
    client.force_login(admin_user)  # a superuser may decide anything, here through the action
    changelist = reverse("admin:approvals_approval_changelist")
    client.post(changelist, {"action": "reject_selected", "_selected_action": [approval.pk]})
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.REJECTED
    again = client.post(changelist, {"action": "approve_selected", "_selected_action": [approval.pk]}, follow=True)
    assert "already rejected" in again.content.decode()
