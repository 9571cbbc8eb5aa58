"""The decision page outside the admin: approvers who are not staff decide from the emailed link."""

import re
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client

from approvals.models import Approval, ApprovalStatus
from executions.services import run_start
from executions.states import RunStatus
from tests.support.runs import step_row, steps, wait_for_run, workflow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]
PASSWORD = "a-long-password-for-alice"


@pytest.fixture
def alice():
    return User.objects.create_user("alice", "alice@example.com", PASSWORD)  # not staff


def waiting_approval(**top):
    wf = workflow(
        steps(
            {
                "id": "sign_off",
                "type": "approval",
                "params": {"approvers": {"users": ["alice"]}, "message": "Ship order {{ input.id }}?"},
            },
            {
                "id": "ship",
                "action": "echo",
                "depends_on": ["sign_off"],
                "params": {"by": "{{ steps.sign_off.output.decided_by }}"},
            },
            **top,
        )
    )
    run, _ = run_start(workflow=wf, input={"id": 7})
    return run, Approval.objects.get(run=run)


def csrf(client: Client) -> str:
    return client.cookies["csrftoken"].value


def test_a_non_staff_approver_logs_in_from_the_emailed_link_and_approves(alice):
    run, approval = waiting_approval()
    link = re.search(r"Decide here: (\S+)", mail.outbox[0].body).group(1)
    assert link == f"http://127.0.0.1:8000/approvals/{approval.pk}/decide/"
    path = urlsplit(link).path
    client = Client(enforce_csrf_checks=True)

    to_login = client.get(path)
    assert to_login.status_code == 302 and to_login["Location"] == f"/accounts/login/?next={path}"
    login_page = client.get(to_login["Location"])
    assert login_page.status_code == 200 and 'name="password"' in login_page.content.decode()
    logged_in = client.post(
        to_login["Location"], {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": csrf(client)}
    )
    assert logged_in.status_code == 302 and logged_in["Location"] == path

    page = client.get(path).content.decode()
    assert "Ship order 7?" in page and str(run.pk) in page and "sign_off" in page and run.workflow.slug in page
    assert 'value="approve"' in page and 'value="reject"' in page
    assert client.post(path, {"decision": "approve"}).status_code == 403  # no CSRF token: refused
    done = client.post(path, {"decision": "approve", "comment": "ship it", "csrfmiddlewaretoken": csrf(client)})
    assert done.status_code == 302 and done["Location"] == path

    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED
    assert step_row(run, "sign_off").output["comment"] == "ship it"
    assert step_row(run, "ship").output == {"by": ["alice"]}
    after = client.get(path).content.decode()
    assert "approved" in after and 'value="approve"' not in after


def test_someone_not_listed_gets_a_403_page_and_changes_nothing(alice, client):
    _run, approval = waiting_approval(defaults={"queue": "nobody-reads-this"})
    client.force_login(User.objects.create_user("mallory", password="pw"))
    path = f"/approvals/{approval.pk}/decide/"
    for response in (client.get(path), client.post(path, {"decision": "approve"})):
        assert response.status_code == 403
        assert "You are not among the approvers of approval" in response.content.decode()
    assert Approval.objects.get(pk=approval.pk).status == ApprovalStatus.PENDING


def test_mistakes_are_pages_that_say_what_is_wrong_never_a_500(alice, client):
    _run, approval = waiting_approval(defaults={"queue": "nobody-reads-this"})
    client.force_login(alice)
    path = f"/approvals/{approval.pk}/decide/"
    unknown = client.post(path, {"decision": "launch"})
    assert unknown.status_code == 400 and "Choose one of: approve, reject" in unknown.content.decode()
    too_long = client.post(path, {"decision": "reject", "comment": "x" * 10_001})
    assert too_long.status_code == 400 and "at most 10000 characters" in too_long.content.decode()
    assert client.get("/approvals/999999/decide/").status_code == 404
    assert client.post(path, {"decision": "reject", "comment": "no"}).status_code == 302
    again = client.post(path, {"decision": "approve"})
    assert again.status_code == 409 and f"Approval {approval.pk} is already rejected." in again.content.decode()


XSS = '<script>window.pwned = 1</script>"><img src=x onerror=alert(1)>'


def test_the_inbox_lists_what_the_user_may_decide_with_the_decision_inline_and_escaped(alice):
    mine = waiting_approval()[1]
    Approval.objects.filter(pk=mine.pk).update(message=XSS)
    wf = workflow(steps({"id": "other", "type": "approval", "params": {"approvers": {"users": ["bob"]}}}))
    run_start(workflow=wf)  # bob's, not alice's
    client = Client()
    client.force_login(alice)
    page = client.get("/approvals/").content.decode()
    assert re.findall(r'data-approval="(\d+)"', page) == [str(mine.pk)]
    assert "<script>window.pwned" not in page and "<img src=x" not in page and "&lt;script&gt;" in page
    assert 'value="approve"' in page and 'value="reject"' in page and "csrfmiddlewaretoken" in page
    assert '<script defer src="/static/chordflow/inbox.js">' in page
    rows = client.get("/approvals/?rows=1").content.decode()
    assert rows.lstrip().startswith("<tr") and "<html" not in rows and f'data-approval="{mine.pk}"' in rows


def test_an_inline_decision_answers_json_and_a_second_one_a_clear_conflict(alice):
    run, approval = waiting_approval()
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/approvals/")  # sets the CSRF cookie, as the page does
    url = f"/approvals/{approval.pk}/decide/"
    refused = client.post(url, {"decision": "approve"}, HTTP_ACCEPT="application/json")
    assert refused.status_code == 403  # no CSRF token: nothing decided
    form = {"decision": "approve", "comment": "fine", "csrfmiddlewaretoken": csrf(client)}
    decided = client.post(url, form, HTTP_ACCEPT="application/json")
    assert decided.status_code == 200 and decided.json() == {
        "ok": True, "message": "Recorded: approve. The run continues from here.",
    }  # fmt: skip
    again = client.post(url, form, HTTP_ACCEPT="application/json")
    assert again.status_code in (403, 409) and again.json()["ok"] is False and again.json()["message"]
    wrong = client.post(url, {**form, "decision": "maybe"}, HTTP_ACCEPT="application/json")
    assert wrong.status_code in (400, 403, 409) and wrong.json()["ok"] is False
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
    assert 'data-approval="' not in client.get("/approvals/?rows=1").content.decode()
