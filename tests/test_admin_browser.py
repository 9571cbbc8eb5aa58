"""The admin in a real browser (headless Chromium), against a live server and a real worker."""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from approvals.models import Approval, ApprovalStatus
from executions.models import Run, RunEvent
from executions.services import run_start
from executions.states import RunStatus, StepStatus
from tests.support.browser import browser, screenshot, sign_in, wait_for  # noqa: F401  (a fixture)
from tests.support.runs import step_row, steps, wait_for_run, wait_until, workflow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def by_css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def test_the_run_page_cancels_after_confirmation_then_retries(browser, live_server, admin_user):  # noqa: F811
    wf = workflow(
        steps(
            {"id": "fetch", "action": "echo", "params": {"order": "{{ input.order_id }}"}},
            {"id": "charge", "action": "test.sleep_then_record", "depends_on": ["fetch"], "params": {"seconds": 0.2}},
            {
                "id": "confirm",
                "type": "approval",
                "depends_on": ["charge"],
                "params": {"approvers": {"users": ["admin"]}},
            },
            {"id": "notify", "action": "echo", "depends_on": ["confirm"], "params": {"paid": True}},
        ),
        slug="checkout",
    )
    run, _ = run_start(workflow=wf, input={"order_id": "A-1001"})
    wait_for_run(run.pk, statuses={RunStatus.WAITING})  # ran on the worker, now waits for a person
    sign_in(browser, live_server.url, admin_user)
    browser.get(live_server.url + reverse("admin:executions_run_change", args=[run.pk]))
    screenshot(browser, "admin-run")
    by_css(browser, "button.run-cancel_runs").click()
    wait_for(browser, lambda: "Cancel 1 run?" in browser.page_source, "the confirmation page")
    assert Run.objects.get(pk=run.pk).status == RunStatus.WAITING  # nothing happens before confirming
    by_css(browser, "#confirm-cancel").click()
    wait_for(browser, lambda: "1 run(s) cancelled." in browser.page_source, "back on the run page")
    assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELLED
    by_css(browser, "button.run-retry_runs")  # a cancelled run offers retry, not cancel
    assert "run-cancel_runs" not in browser.page_source
    screenshot(browser, "admin-run-cancelled")
    by_css(browser, "button.run-retry_runs").click()
    wait_for(browser, lambda: "1 run(s) retried." in browser.page_source, "the retry's message")
    wait_for_run(run.pk, statuses={RunStatus.WAITING})  # the cancelled approval is asked again
    assert step_row(run, "confirm").status == StepStatus.WAITING


def test_an_approver_finds_and_decides_an_approval_in_the_admin(browser, live_server):  # noqa: F811
    alice = User.objects.create_user("alice", password="pw", is_staff=True)
    wf = workflow(
        steps(
            {"id": "price", "action": "echo", "params": {"total": "{{ input.total }}", "lines": "{{ input.lines }}"}},
            {
                "id": "sign_off",
                "type": "approval",
                "depends_on": ["price"],
                "params": {
                    "approvers": {"users": ["alice"]},
                    "message": "Ship order {{ input.order_id }} for {{ steps.price.output.total }} EUR?",
                },
            },
            {
                "id": "ship",
                "action": "echo",
                "depends_on": ["sign_off"],
                "params": {"by": "{{ steps.sign_off.output }}"},
            },
        ),
        slug="order-sign-off",
    )
    lines = [{"sku": "BOOK-1", "qty": 2}, {"sku": "PEN-7", "qty": 10}]
    run, _ = run_start(workflow=wf, input={"order_id": "A-1001", "total": 1499.0, "lines": lines})
    wait_until(lambda: Approval.objects.filter(run=run).exists(), what="the approval")
    approval = Approval.objects.get(run=run)
    sign_in(browser, live_server.url, alice)
    browser.get(live_server.url + reverse("admin:index"))
    by_css(browser, ".approvals-waiting a").click()  # "1 approval waits for you"
    wait_for(browser, lambda: "Ship order A-1001 for 1499.0 EUR?" in browser.page_source, "the approvals list")
    screenshot(browser, "admin-approvals")
    by_css(browser, "a.button[href$='/decide/']").click()
    wait_for(browser, lambda: "What led here" in browser.page_source, "the decide page")
    assert "PEN-7" in browser.page_source  # the run's input and price's output
    screenshot(browser, "admin-decide")
    by_css(browser, "textarea[name='comment']").send_keys("Checked the lines.")
    by_css(browser, "input[value='approve']").click()
    wait_for(browser, lambda: "approve recorded" in browser.page_source, "the recorded decision")
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
    event = RunEvent.objects.get(run=run, kind="approval.decided")
    assert event.message == "approve by alice: Checked the lines."


def test_the_landing_leads_to_the_admin_and_the_api_root_lists_its_endpoints(browser, live_server):  # noqa: F811
    browser.get(live_server.url + "/")
    wait_for(browser, lambda: "/admin/login/" in browser.current_url, "the redirect to the admin's login")
    assert by_css(browser, "#id_username")  # the admin's sign-in form, not a 404
    screenshot(browser, "landing")
    browser.get(live_server.url + "/api/")
    assert "/api/runs/" in browser.page_source and "/api/docs/" in browser.page_source
