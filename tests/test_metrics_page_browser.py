"""The metrics page in a real browser (headless Chromium on daphne): an hour of history, folded from
run events, drawn as charts; its screenshot is the README's."""

import random
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from executions.gauges import samples as gauge_samples
from executions.metrics import metrics_fold
from executions.models import Run, RunEvent
from executions.services import run_start
from tests.support.browser import browser, screenshot, sign_in, wait_for  # noqa: F401  (a fixture)
from tests.support.runs import steps, wait_for_run, workflow
from tests.support.web import daphne_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def past_runs(wf, *, count: int, failing_every: int, rng: random.Random) -> None:
    """`count` finished runs of `wf` over the last hour, each with the events the engine records."""
    version = wf.versions.get()
    now = timezone.now()
    runs, events = [], []
    for n in range(count):
        started = now - timedelta(seconds=rng.uniform(60, 3540))
        failed = n % failing_every == 0
        run = Run(workflow=wf, version=version, status="failed" if failed else "succeeded", started_at=started)
        runs.append(run)
        at = started
        events.append(RunEvent(kind="run.started", data={"version": 1}, created_at=at))
        for step in ("fetch", "transform", "load"):
            wait, duration = rng.lognormvariate(-5, 0.8), rng.lognormvariate(-3 if step != "load" else -1.5, 0.6)
            at += timedelta(seconds=wait)
            events.append(RunEvent(kind="step.started", step_id=step, data={"attempt": 1, "wait": wait}, created_at=at))
            at += timedelta(seconds=duration)
            if step == "transform" and rng.random() < 0.15:  # a retry, then success
                events.append(
                    RunEvent(
                        kind="step.retrying", step_id=step, data={"attempt": 1, "duration": duration}, created_at=at
                    )
                )
                events.append(RunEvent(kind="step.started", step_id=step, data={"attempt": 2}, created_at=at))
            kind = "step.failed" if failed and step == "load" else "step.succeeded"
            events.append(RunEvent(kind=kind, step_id=step, data={"attempt": 1, "duration": duration}, created_at=at))
        events.append(RunEvent(kind="run.failed" if failed else "run.succeeded", data={}, created_at=at))
        run.finished_at = at
        for event in events:
            event.__dict__.setdefault("run_of", run)
    Run.objects.bulk_create(runs)
    for event in events:
        event.run = event.run_of
    times = [event.created_at for event in events]  # auto_now_add sets them to now on insert:
    RunEvent.objects.bulk_create(events, batch_size=1000)
    for event, at in zip(events, times, strict=True):  # the historic times go in afterwards
        event.created_at = at
    RunEvent.objects.bulk_update(events, ["created_at"], batch_size=1000)


def test_the_metrics_page_draws_an_hour_of_runs(browser, admin_user: User, tmp_path):  # noqa: F811
    rng = random.Random(7)
    nightly = workflow(steps({"id": "fetch", "action": "echo"}), slug="nightly-etl")
    orders = workflow(steps({"id": "fetch", "action": "echo"}), slug="order-pipeline")
    past_runs(nightly, count=120, failing_every=9, rng=rng)
    past_runs(orders, count=260, failing_every=40, rng=rng)
    live = run_start(workflow=orders, input={})[0]  # and one run the worker really executes now
    wait_for_run(live.pk)
    metrics_fold(samples=gauge_samples())

    with daphne_server(log=tmp_path / "daphne.log") as url:
        sign_in(browser, url, admin_user)
        browser.get(url + reverse("admin:executions_run_metrics"))
        wait_for(browser, lambda: browser.find_elements("css selector", "svg.cf-chart"), "the charts")
        figures = {
            tile.find_element("css selector", ".cf-tile-label").text: tile.find_element(
                "css selector", ".cf-tile-figure"
            ).text
            for tile in browser.find_elements("css selector", ".cf-tile")
        }
        assert figures["Succeeded"] == f"{120 - 14 + 260 - 7 + 1}"
        assert figures["Failed"] == "21"  # 14 + 7
        assert len(browser.find_elements("css selector", "svg.cf-chart polyline")) >= 8
        rows = browser.find_elements("css selector", ".cf-workflow-table tbody tr")
        assert [row.get_attribute("data-workflow") for row in rows] == ["nightly-etl", "order-pipeline"]
        screenshot(browser, "admin-metrics")

        browser.find_element("css selector", "tr[data-workflow='nightly-etl'] a").click()
        wait_for(browser, lambda: "workflow=nightly-etl" in browser.current_url, "the workflow's page")
        figures = [tile.text for tile in browser.find_elements("css selector", ".cf-tile-figure")]
        assert figures[2] == "14"  # failed, of that workflow alone
