"""The run list and the approvals inbox in a real browser (headless Chromium) served by daphne, with a
real worker: both follow what happens without a reload."""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from approvals.models import Approval, ApprovalStatus
from approvals.services import approval_decide
from executions.models import RunEvent
from executions.services import run_start
from executions.states import RunStatus
from tests.support.browser import browser, screenshot, sign_in, wait_for  # noqa: F401  (a fixture)
from tests.support.runs import steps, wait_for_run, wait_until, workflow
from tests.support.web import daphne_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def css(driver, selector: str):
    return driver.find_elements("css selector", selector)


def approval_workflow(slug: str, approver: str, message: str = "Ship order {{ input.id }}?"):
    return workflow(
        steps(
            {"id": "price", "action": "echo", "params": {"id": "{{ input.id }}"}},
            {
                "id": "sign_off",
                "type": "approval",
                "depends_on": ["price"],
                "params": {"approvers": {"users": [approver]}, "message": message},
            },
            {"id": "ship", "action": "echo", "depends_on": ["sign_off"]},
        ),
        slug=slug,
    )


def test_the_run_list_follows_statuses_and_counts_new_runs(browser, admin_user, tmp_path):  # noqa: F811
    wf = approval_workflow("list-live", "admin")
    run, _ = run_start(workflow=wf, input={"id": 1})
    wait_for_run(run.pk, statuses={RunStatus.WAITING})
    with daphne_server(log=tmp_path / "daphne.log") as url:
        sign_in(browser, url, admin_user)
        browser.get(url + reverse("admin:executions_run_changelist"))
        wait_for(browser, lambda: browser.find_element("id", "cf-list-live").text == "live", "the socket")
        row = f"#result_list tr[data-run='{run.pk}']"
        assert css(browser, row)[0].get_attribute("data-status") == "waiting"

        approval_decide(approval_id=Approval.objects.get(run=run).pk, user=admin_user, decision="approve")
        wait_for(browser, lambda: css(browser, row)[0].get_attribute("data-status") == "succeeded", "the row, live")
        wait_for(browser, lambda: css(browser, row + " .field-duration")[0].text.endswith(" s"), "its duration")
        assert css(browser, row + " .cf-status")[0].text == "succeeded"

        run_start(workflow=wf, input={"id": 2})
        wait_for(browser, lambda: not css(browser, "#cf-new-runs")[0].get_attribute("hidden"), "the new-runs notice")
        assert "1 run started" in css(browser, "#cf-new-runs")[0].text
        screenshot(browser, "admin-runs-live")


def test_the_inbox_shows_a_new_approval_live_and_decides_it_inline(browser, tmp_path):  # noqa: F811
    alice = User.objects.create_user("alice", password="pw")  # an approver, not staff
    wf = approval_workflow("inbox-live", "alice", message="Ship <b>order</b> {{ input.id }}?")
    with daphne_server(log=tmp_path / "daphne.log") as url:
        sign_in(browser, url, alice)
        browser.get(url + "/approvals/")
        wait_for(browser, lambda: browser.find_element("id", "inbox-live").text == "live", "the socket")
        assert browser.find_element("id", "inbox-empty").is_displayed()

        run, _ = run_start(workflow=wf, input={"id": 42})
        wait_until(lambda: Approval.objects.filter(run=run).exists(), what="the approval")
        approval = Approval.objects.get(run=run)
        row = f"tr[data-approval='{approval.pk}']"
        wait_for(browser, lambda: css(browser, row), "the new approval, without a reload")
        assert "Ship <b>order</b> 42?" in css(browser, row + " .message")[0].text  # text, not markup
        assert not browser.find_element("id", "inbox-empty").is_displayed()
        comment = css(browser, row + " input[name='comment']")[0]
        comment.send_keys("Looks right.")
        # Enter in the comment box would press the first button (approve): the page holds it back.
        held_back = browser.execute_script(
            "var e = new KeyboardEvent('keydown', {key: 'Enter', bubbles: true, cancelable: true});"
            "return !arguments[0].dispatchEvent(e);",
            comment,
        )
        assert held_back
        screenshot(browser, "approvals-inbox-live")
        css(browser, row + " button.decide-approve")[0].click()
        wait_for(browser, lambda: not css(browser, row), "the decided row to go")
        assert "Recorded: approve" in browser.find_element("id", "inbox-notice").text
        assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
        approval.refresh_from_db()
        assert approval.status == ApprovalStatus.APPROVED
        assert RunEvent.objects.get(run=run, kind="approval.decided").message == "approve by alice: Looks right."
