"""Approvals in the admin: the inbox, the decision page and the actions."""

import pytest
from django.contrib.auth.models import Permission, User
from django.core import mail
from django.urls import reverse

from approvals.models import Approval, ApprovalKind, ApprovalStatus, Decision
from executions import attempts
from executions.models import RunEvent
from executions.services import run_start
from executions.states import StepStatus
from tests.support.runs import step_row, steps, workflow
from workflows.services import version_spec

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
    changelist = reverse("admin:approvals_approval_changelist") + "?mine=all&status=all"  # none is theirs
    client.post(changelist, {"action": "reject_selected", "_selected_action": [approval.pk]})
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.REJECTED
    again = client.post(changelist, {"action": "approve_selected", "_selected_action": [approval.pk]}, follow=True)
    assert "already rejected" in again.content.decode()


@pytest.fixture
def escalation():
    """A step that failed for good with on_failure: escalate and no escalate_to, played in-process."""
    wf = workflow(
        steps({"id": "charge", "action": "echo", "on_failure": "escalate"}, defaults={"queue": "nobody-reads-this"})
    )
    run, _ = run_start(workflow=wf)
    row = attempts.step_claim(step_run_id=step_row(run, "charge").pk, attempt=1)
    failure = attempts.Failure("Boom", "card declined", retryable=False)
    attempts.step_fail(row=row, step=version_spec(run.version).step("charge"), failure=failure)
    approval = Approval.objects.get(run=run)
    assert approval.kind == ApprovalKind.ESCALATION and approval.status == ApprovalStatus.PENDING
    return run, approval


def test_a_staff_user_without_the_permission_cannot_resolve_an_escalation(client, escalation):
    run, approval = escalation
    decide = reverse("admin:approvals_approval_decide", args=[approval.pk])
    client.force_login(staff("sam"))
    assert client.get(decide).status_code == 404
    assert client.post(decide, {"decision": "skip", "comment": "meh"}).status_code == 404
    viewer = staff("vic")
    viewer.user_permissions.add(Permission.objects.get(codename="view_approval"))
    client.force_login(viewer)
    page = client.get(decide)
    assert page.status_code == 200 and 'value="skip"' not in page.content.decode()
    refused = client.post(decide, {"decision": "skip"}, follow=True)
    assert "needs the permission approvals.resolve_escalation" in refused.content.decode()
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING and step_row(run, "charge").status == StepStatus.WAITING


def test_holders_of_the_permission_are_the_default_resolvers_and_are_emailed(client, escalation):
    _run, approval = escalation
    assert mail.outbox == []  # nobody held the permission when the step failed
    resolver = staff("rita")
    resolver.email = "rita@example.com"
    resolver.save()
    resolver.user_permissions.add(Permission.objects.get(codename="resolve_escalation"))
    client.force_login(resolver)
    inbox = client.get(reverse("admin:approvals_approval_changelist") + "?mine=1")
    assert reverse("admin:approvals_approval_decide", args=[approval.pk]) in inbox.content.decode()
    done = client.post(reverse("admin:approvals_approval_decide", args=[approval.pk]), {"decision": "skip"})
    assert done.status_code == 302
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.RESOLVED and approval.outcome["by"] == "rita"


def test_no_one_deletes_approvals_or_their_decisions_not_even_a_superuser(admin_client, pending):
    _run, approval = pending
    Decision.objects.create(approval=approval, decision="approve", username="alice")
    changelist = reverse("admin:approvals_approval_changelist")
    assert admin_client.get(reverse("admin:approvals_approval_delete", args=[approval.pk])).status_code == 403
    page = admin_client.get(changelist)
    assert 'value="delete_selected"' not in page.content.decode()
    admin_client.post(changelist, {"action": "delete_selected", "_selected_action": [approval.pk], "post": "yes"})
    change = admin_client.get(reverse("admin:approvals_approval_change", args=[approval.pk]))
    assert change.status_code == 200 and "decisions-0-DELETE" not in change.content.decode()
    assert Approval.objects.filter(pk=approval.pk).exists() and Decision.objects.filter(approval=approval).count() == 1


@pytest.fixture
def question():
    """An approval after a step that ran (in-process), whose output the question quotes."""
    staff("alice")
    wf = workflow(
        steps(
            {"id": "price", "action": "echo", "params": {"total": "{{ input.total }}", "note": "<script>x</script>"}},
            {
                "id": "sign_off",
                "type": "approval",
                "depends_on": ["price"],
                "params": {
                    "approvers": {"users": ["alice"]},
                    "message": "Ship order <b>{{ input.order }}</b> for {{ steps.price.output.total }}?\nSecond line.",
                },
            },
            defaults={"queue": "nobody-reads-this"},
        )
    )
    run, _ = run_start(workflow=wf, input={"order": "A-1", "total": 1499})
    attempts.step_execute(step_run_id=step_row(run, "price").pk, attempt=1)
    return run, Approval.objects.get(run=run)


def test_the_admin_index_counts_pending_approvals(client, question):
    client.force_login(User.objects.get(username="alice"))
    index = client.get(reverse("admin:index")).content.decode()
    assert "1 approval waits for you" in index and reverse("admin:approvals_approval_changelist") in index
    assert 'class="approvals-inbox" href="/approvals/"' in index  # the live inbox, linked either way
    client.force_login(staff("bob"))
    index = client.get(reverse("admin:index")).content.decode()
    assert "waits for you" not in index and 'class="approvals-inbox" href="/approvals/"' in index


def test_the_approvals_list_opens_on_mine_pending_with_the_message_and_decide(client, question, admin_user):
    _run, approval = question
    client.force_login(User.objects.get(username="alice"))
    changelist = reverse("admin:approvals_approval_changelist")
    page = client.get(changelist).content.decode()
    assert "Ship order &lt;b&gt;A-1&lt;/b&gt; for 1499?" in page
    assert reverse("admin:approvals_approval_decide", args=[approval.pk]) in page
    client.force_login(admin_user)  # may see every approval, none assigned to them
    assert reverse("admin:approvals_approval_decide", args=[approval.pk]) not in client.get(changelist).content.decode()
    everyone = client.get(changelist, {"mine": "all"}).content.decode()
    assert reverse("admin:approvals_approval_decide", args=[approval.pk]) in everyone
    Approval.objects.filter(pk=approval.pk).update(status=ApprovalStatus.REJECTED)
    assert "Ship order" not in client.get(changelist, {"mine": "all"}).content.decode()
    assert "Ship order" in client.get(changelist, {"mine": "all", "status": "all"}).content.decode()


def test_the_admin_decide_page_shows_the_run_the_step_the_inputs_and_the_whole_question(client, question):
    run, approval = question
    client.force_login(User.objects.get(username="alice"))
    page = client.get(reverse("admin:approvals_approval_decide", args=[approval.pk])).content.decode()
    assert reverse("admin:executions_run_change", args=[run.pk]) in page
    assert reverse("admin:executions_steprun_change", args=[approval.step_run_id]) in page
    assert "Ship order &lt;b&gt;A-1&lt;/b&gt; for 1499?\nSecond line." in page
    assert "&quot;order&quot;: &quot;A-1&quot;" in page  # the run's input
    assert "price" in page and "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x" not in page  # price's output


def test_a_decision_event_names_the_decider_and_the_comment(client, question, admin_client):
    run, approval = question
    client.force_login(User.objects.get(username="alice"))
    decide = reverse("admin:approvals_approval_decide", args=[approval.pk])
    client.post(decide, {"decision": "approve", "comment": "ok <b>go</b>"})
    event = RunEvent.objects.get(run=run, kind="approval.decided")
    assert event.message == "approve by alice: ok <b>go</b>"
    page = admin_client.get(reverse("admin:executions_run_change", args=[run.pk])).content.decode()
    assert "approve by alice: ok &lt;b&gt;go&lt;/b&gt;" in page
