"""The admin's metrics page: the figures of known runs, drawn from the rollups; bad input; permissions."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from executions.charts import Line, fmt, line_chart, nice_ceiling
from executions.gauges import samples as gauge_samples
from executions.metrics import STEP_BUCKETS, metrics_fold
from executions.metrics_page import RANGES, bin_starts, quantile
from executions.services import run_start
from tests.support.runs import steps, wait_for_run, workflow

URL = "/admin/executions/run/metrics/"
RETRY = {"max_attempts": 2, "backoff": 0.05, "jitter": False}


def admin_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


def tiles(html: str) -> dict[str, str]:
    pairs = re.findall(r'cf-tile-figure">([^<]*)</span><span class="cf-tile-label">([^<]*)<', html)
    return {label: figure for figure, label in pairs}


def test_quantile_interpolates_within_its_bucket_like_prometheus():
    counts = [0] * (len(STEP_BUCKETS) + 1)
    counts[STEP_BUCKETS.index(0.1)] = 10  # ten observations in (0.05, 0.1]
    assert quantile(0.5, counts, STEP_BUCKETS) == pytest.approx(0.075)
    assert quantile(1.0, counts, STEP_BUCKETS) == pytest.approx(0.1)
    assert quantile(0.5, [0] * len(counts), STEP_BUCKETS) is None
    counts[-1] = 100  # beyond the last bound: all it can say is "above 3600 s"
    assert quantile(0.99, counts, STEP_BUCKETS) == STEP_BUCKETS[-1]


def test_each_range_has_its_bins_ending_with_now():
    now = timezone.now()
    for name, expected in (("hour", 60), ("day", 144), ("week", 168)):
        starts = bin_starts(RANGES[name], now)
        assert len(starts) == expected
        assert starts[-1] <= now < starts[-1] + timedelta(seconds=RANGES[name].period)


def test_a_chart_escapes_what_it_is_given_and_breaks_where_data_is_missing():
    starts = bin_starts(RANGES["hour"], timezone.now())
    values = (1.0, 2.0, None, 3.0) + (None,) * 56
    svg = line_chart(title="<script>x</script>", lines=[Line("<b>", "#123456", values)], starts=starts)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count("<polyline") == 1 and svg.count("<circle") == 1  # 1-2 joined; 3 alone
    assert fmt(quantile(0.5, [0] * 17, STEP_BUCKETS), "s") == "-"  # buckets, all empty: no figure, no error
    assert fmt(0.0042, "s") == "4.2 ms" and fmt(1234) == "1,234" and fmt(12.5, "%") == "12.5%"
    assert nice_ceiling(7) == 10 and nice_ceiling(0.3) == 0.5 and nice_ceiling(0) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_the_page_shows_the_figures_of_known_runs():
    good = workflow(
        steps(
            {"id": "a", "action": "echo"},
            {"id": "flaky", "action": "test.flaky", "depends_on": ["a"], "params": {"succeed_on": 2}, "retry": RETRY},
        ),
        slug="page-good",
    )
    bad = workflow(steps({"id": "boom", "action": "test.permanent"}), slug="page-bad")
    runs = [run_start(workflow=good, input={})[0] for _ in range(2)] + [run_start(workflow=bad, input={})[0]]
    for run in runs:
        wait_for_run(run.pk)
    metrics_fold(samples=gauge_samples())
    client = admin_client()

    page = client.get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    figures = tiles(html)
    assert figures["Succeeded"] == "2" and figures["Failed"] == "1"
    assert figures["Retry rate"] == "28.6%"  # 2 retries of 7 attempts (a: 2, flaky: 4, boom: 1)
    assert "ms" in figures["Step p50 / p95"] or " s" in figures["Step p50 / p95"]
    assert html.count('<svg class="cf-chart"') >= 6
    row = re.search(r'<tr data-workflow="page-good">(.*?)</tr>', html, re.S).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells[1:5] == ["2", "2", "0", "0"]  # started, succeeded, failed, cancelled
    assert cells[5] == "100%"

    only_bad = tiles(client.get(URL, {"workflow": "page-bad", "range": "week"}).content.decode())
    assert only_bad["Succeeded"] == "0" and only_bad["Failed"] == "1"

    # The admin index links here.
    assert URL in client.get("/admin/").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "says"),
    [({"range": "year"}, "range=&#x27;year&#x27; is not one of: hour, day, week"),
     ({"workflow": "nope"}, "workflow=&#x27;nope&#x27;: no workflow has that slug")],
)  # fmt: skip
def test_a_bad_range_or_workflow_is_a_400_that_says_which(query, says):
    response = admin_client().get(URL, query)
    assert response.status_code == 400
    assert says in response.content.decode()


@pytest.mark.django_db
def test_the_page_needs_view_run():
    user = get_user_model().objects.create_user("clerk", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    assert client.get(URL).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_run"))
    client.force_login(get_user_model().objects.get(pk=user.pk))
    assert client.get(URL).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_the_page_costs_the_same_queries_for_ten_runs_as_for_a_hundred():
    wf = workflow(steps({"id": "a", "action": "echo", "queue": "nobody-reads-this"}), slug="page-cost")
    client = admin_client()

    def queries(runs: int) -> int:
        for _ in range(runs):
            run_start(workflow=wf, input={})
        metrics_fold(samples=gauge_samples())
        with CaptureQueriesContext(connection) as captured:
            assert client.get(URL, {"range": "day"}).status_code == 200
        return len(captured)

    assert queries(10) == queries(90)
