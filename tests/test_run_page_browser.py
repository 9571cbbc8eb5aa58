"""The live run page in a real browser (headless Chromium) served by daphne, as `make run` serves it,
against a real worker: the graph, the timeline and the event log follow the run without a reload."""

import pytest
from django.db import OperationalError
from django.urls import reverse

from approvals.models import Approval
from approvals.services import approval_decide
from executions.services import run_cancel, run_start
from executions.states import RunStatus
from tests.support.browser import browser, screenshot, sign_in, wait_for  # noqa: F401  (a fixture)
from tests.support.runs import steps, wait_for_run, workflow
from tests.support.web import daphne_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

XSS = '<script>window.pwned = 1</script>"><img src=x onerror="window.pwned = 1">'


def status_of(driver, step: str) -> str | None:
    return driver.execute_script(
        "var n = Array.from(document.querySelectorAll('.cf-node')).find(n => n.dataset.step === arguments[0]);"
        "return n ? n.dataset.status : null;",
        step,
    )


def test_the_run_page_follows_a_run_live_graph_timeline_and_log(browser, admin_user, tmp_path):  # noqa: F811
    wf = workflow(
        steps(
            {"id": "fetch", "action": "echo", "params": {"order": "{{ input.order_id }}", "note": XSS}},
            {
                "id": "pack",
                "action": "test.sleep_then_record",
                "depends_on": ["fetch"],
                "for_each": "{{ input.items }}",
                "params": {"seconds": 0.05},
            },
            {"id": "price", "action": "echo", "depends_on": ["fetch"]},
            {
                "id": "approve",
                "type": "approval",
                "depends_on": ["pack", "price"],
                "params": {"approvers": {"users": ["admin"]}, "message": XSS},
            },
            {"id": "ship", "action": "test.permanent", "depends_on": ["approve"], "params": {"message": XSS}},
        ),
        slug="live-page",
    )
    run, _ = run_start(workflow=wf, input={"order_id": "A-7", "items": list(range(40))})
    wait_for_run(run.pk, statuses={RunStatus.WAITING})
    with daphne_server(log=tmp_path / "daphne.log") as url:
        sign_in(browser, url, admin_user)
        browser.get(url + reverse("admin:executions_run_change", args=[run.pk]))
        wait_for(browser, lambda: browser.find_element("id", "cf-connection").text == "live", "the socket")
        assert status_of(browser, "approve") == "waiting" and status_of(browser, "pack") == "succeeded"
        assert browser.find_element("css selector", ".cf-node[data-step='pack'] .cf-node-progress").text == "40 / 40"
        logged = len(browser.find_elements("css selector", "#cf-events tbody tr"))

        approval_decide(approval_id=Approval.objects.get(run=run).pk, user=admin_user, decision="approve")
        wait_for(browser, lambda: status_of(browser, "ship") == "failed", "ship to fail, live")
        wait_for(browser, lambda: browser.find_element("css selector", ".cf-run-status").text == "FAILED", "the run")
        assert status_of(browser, "approve") == "succeeded"
        logged_kinds = [row.text for row in browser.find_elements("css selector", "#cf-events tbody tr")]
        assert logged and any("run.failed" in text for text in logged_kinds)  # the log has the ending
        rows = browser.find_elements("css selector", "#cf-timeline .cf-tl-row")
        assert [row.get_attribute("data-step") for row in rows] == ["fetch", "pack", "price", "approve", "ship"]
        assert browser.find_elements("css selector", ".cf-tl-row[data-step='ship'] .cf-tl-run[data-status='failed']")
        wait_for(browser, lambda: browser.find_elements("css selector", "button.run-retry_runs"), "the retry button")

        browser.find_element("css selector", ".cf-node[data-step='ship']").click()
        wait_for(browser, lambda: "PermanentError" in browser.find_element("id", "cf-step-panel").text, "the panel")
        # The run's fields were refreshed with the buttons: no stale "waiting" left on the page.
        assert browser.find_element("css selector", ".field-status_colored .cf-status").text == "failed"
        screenshot(browser, "admin-run-live")
        browser.find_element("css selector", ".cf-node[data-step='pack']").click()
        branch = "#cf-step-panel tr[data-branch='{}']".format
        wait_for(browser, lambda: browser.find_elements("css selector", branch(24)), "the first page of branches")
        browser.find_element("css selector", "#cf-step-panel a[data-page='2']").click()
        wait_for(browser, lambda: browser.find_elements("css selector", branch(39)), "the second page")
        assert browser.execute_script("return window.pwned") is None  # every name, message and output escaped


def test_a_diamond_and_a_wide_fan_out_mid_run_draw_as_they_go(browser, admin_user, tmp_path):  # noqa: F811
    diamond = workflow(
        steps(
            {"id": "fetch", "action": "echo"},
            {"id": "price", "action": "echo", "depends_on": ["fetch"]},
            {"id": "stock", "action": "echo", "depends_on": ["fetch"]},
            {"id": "ship", "action": "echo", "depends_on": ["price", "stock"]},
        ),
        slug="diamond",
    )
    wide = workflow(
        steps(
            {"id": "prepare", "action": "echo"},
            {
                "id": "resize",
                "action": "test.sleep_then_record",
                "depends_on": ["prepare"],
                "for_each": "{{ input.images }}",
                "params": {"seconds": 0.02},
            },
            {"id": "publish", "action": "echo", "depends_on": ["resize"]},
        ),
        slug="wide",
    )
    done, _ = run_start(workflow=diamond)
    assert wait_for_run(done.pk).status == RunStatus.SUCCEEDED
    with daphne_server(log=tmp_path / "daphne.log") as url:
        sign_in(browser, url, admin_user)
        browser.get(url + reverse("admin:executions_run_change", args=[done.pk]))
        assert [status_of(browser, s) for s in ("fetch", "price", "stock", "ship")] == ["succeeded"] * 4
        screenshot(browser, "admin-run-diamond")

        running, _ = run_start(workflow=wide, input={"images": list(range(1000))})
        browser.get(url + reverse("admin:executions_run_change", args=[running.pk]))
        progress = ".cf-node[data-step='resize'] .cf-node-progress"

        def done_so_far() -> int:
            text = browser.find_element("css selector", progress).text  # "no branches yet" before the fan-out
            return int(text.split(" / ")[0].replace(",", "")) if " / " in text else 0

        wait_for(browser, lambda: done_so_far() >= 150, "the fan-out's progress to grow, live")
        assert status_of(browser, "resize") == "running" and status_of(browser, "publish") == "pending"
        screenshot(browser, "admin-run-fan-out")
        # The rest is not needed. Known issue: on PostgreSQL a cancel racing a branch's finish can hit a
        # deadlock (lock order steps -> parent vs branch -> parent); PostgreSQL aborts one and it is retried.
        for _ in range(5):
            try:
                run_cancel(run_id=running.pk, by="user:test")
                break
            except OperationalError:
                continue


def test_the_step_panel_shows_the_steps_log_and_appends_its_new_lines_live(browser, admin_user, tmp_path):  # noqa: F811
    import uuid

    from executions.models import StepLog
    from tests.support.actions import counter
    from tests.support.runs import wait_until

    go = f"test:go:{uuid.uuid4()}"
    said = [{"level": "info", "message": XSS}, {"level": "warning", "message": "first of two"}]
    wf = workflow(steps({"id": "talk", "action": "test.log", "params": {"lines": said, "wait_key": go}}))
    run, _ = run_start(workflow=wf)
    wait_until(lambda: StepLog.objects.filter(run=run).count() == 2, what="the running step's lines written")
    with daphne_server(log=tmp_path / "daphne.log") as url:
        sign_in(browser, url, admin_user)
        browser.get(url + reverse("admin:executions_run_change", args=[run.pk]))
        wait_for(browser, lambda: browser.find_element("id", "cf-connection").text == "live", "the socket")
        browser.find_element("css selector", ".cf-node[data-step='talk']").click()
        panel = lambda: browser.find_element("id", "cf-step-panel").text  # noqa: E731
        wait_for(browser, lambda: "first of two" in panel(), "the step's log in its panel")
        assert XSS in panel()  # shown as text
        opens = browser.find_element("id", "cf-connection").get_attribute("data-opens")
        counter().set(go, 1)
        wait_for(browser, lambda: "done waiting" in panel(), "the new line, appended live")
        # by its step.log hint, not by a reconnect's catch-up
        assert browser.find_element("id", "cf-connection").get_attribute("data-opens") == opens
        rows = browser.find_elements("css selector", "#cf-step-panel .cf-log tbody tr")
        assert [row.get_attribute("data-level") for row in rows] == ["info", "warning", "info"]
        assert browser.execute_script("return window.pwned") is None
    wait_for_run(run.pk)
