"""The benchmark's observability shape: a scrape of /metrics and the admin's metrics page with a
million runs in the database (20,000 with --quick), and a week of rollups for ten workflows.

Runs are inserted with one INSERT … SELECT (a recursive CTE on SQLite, generate_series on
PostgreSQL), and rollups as the fold would have written them: what is measured is the reading.
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from executions.metrics import PERIODS, RUN_BUCKETS, STEP_BUCKETS, Series, floor, metrics_fold
from executions.models import MetricRollup, MetricTotal, Run
from workflows.services import workflow_save

WORKFLOWS = 10
STEPS = 10
ACTIVE = 200  # unfinished runs among them
WEEK = 7 * 86400


def seed(runs: int) -> list[str]:
    """`runs` runs over the last week across WORKFLOWS workflows, ACTIVE of them running; their rollups."""
    definition = {"name": "observed", "steps": [{"id": f"s{i}", "action": "echo"} for i in range(STEPS)]}
    saved = [workflow_save(slug=f"observed-{n}", definition=definition)[:2] for n in range(WORKFLOWS)]
    per = runs // WORKFLOWS
    for workflow, version in saved:
        _insert_runs(workflow.pk, version.pk, per)
    Run.objects.filter(pk__in=Run.objects.filter(workflow_id=saved[0][0].pk).values("pk")[:ACTIVE]).update(
        status="running", finished_at=None
    )
    _rollups([workflow.slug for workflow, _ in saved], per)
    return [workflow.slug for workflow, _ in saved]


def _insert_runs(workflow_id: int, version_id: int, count: int) -> None:
    table = connection.ops.quote_name(Run._meta.db_table)
    columns = "id, workflow_id, version_id, status, input, started_by, created_at, started_at, finished_at"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT gen_random_uuid(), %s, %s, "  # noqa: S608
                "CASE WHEN x %% 10 = 0 THEN 'failed' ELSE 'succeeded' END, '{}'::jsonb, '', "
                "now() - (x %% %s) * interval '1 second', now() - (x %% %s) * interval '1 second', "
                "now() - (x %% %s) * interval '1 second' + interval '2 seconds' FROM generate_series(1, %s) AS x",
                [workflow_id, version_id, WEEK, WEEK, WEEK, count],
            )
            return
        cursor.execute(
            f"WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < %s) "  # noqa: S608
            f"INSERT INTO {table} ({columns}) SELECT lower(hex(randomblob(16))), %s, %s, "
            "CASE WHEN x %% 10 = 0 THEN 'failed' ELSE 'succeeded' END, '{}', '', "
            "datetime('now', '-' || (x %% %s) || ' seconds'), datetime('now', '-' || (x %% %s) || ' seconds'), "
            "datetime('now', '-' || (x %% %s - 2) || ' seconds') FROM n",
            [count, workflow_id, version_id, WEEK, WEEK, WEEK],
        )


def _rollups(slugs: list[str], per_workflow: int) -> None:
    now = timezone.now()
    rows, totals = [], []
    for slug in slugs:
        for period in PERIODS:
            span = 86400 if period == 60 else WEEK
            bins = span // period
            per_bin = max(per_workflow * period // WEEK, 1)
            for i in range(bins):
                start = floor(now - timedelta(seconds=period * i), period)
                steps = per_bin * STEPS
                for series, status, count, bounds in (
                    (Series.RUNS_STARTED, "", per_bin, None),
                    (Series.RUN_DURATION, "succeeded", per_bin - per_bin // 10, RUN_BUCKETS),
                    (Series.RUN_DURATION, "failed", per_bin // 10, RUN_BUCKETS),
                    (Series.ATTEMPTS, "", steps, None),
                    (Series.QUEUE_WAIT, "", steps, STEP_BUCKETS),
                    (Series.STEP_DURATION, "succeeded", steps, STEP_BUCKETS),
                    (Series.RETRIES, "", steps // 50, None),
                ):
                    buckets = [count // len(bounds)] * (len(bounds) + 1) if bounds else []
                    rows.append(
                        MetricRollup(
                            period=period, start=start, series=series, workflow=slug, status=status, count=count,
                            sum=count * 0.01, buckets=buckets,
                        )
                    )  # fmt: skip
        for step in range(STEPS):
            for series, bounds in ((Series.STEP_DURATION, STEP_BUCKETS), (Series.QUEUE_WAIT, STEP_BUCKETS)):
                totals.append(
                    MetricTotal(
                        series=series, workflow=slug, step=f"s{step}", queue="default",
                        status="succeeded" if series == Series.STEP_DURATION else "", count=per_workflow,
                        sum=per_workflow * 0.01, buckets=[per_workflow // len(bounds)] * (len(bounds) + 1),
                    )
                )  # fmt: skip
    MetricRollup.objects.bulk_create(rows, batch_size=2000, ignore_conflicts=True)
    MetricTotal.objects.bulk_create(totals, batch_size=2000, ignore_conflicts=True)


def _timed(client: Client, url: str, repeats: int) -> float:
    """The median of `repeats` GETs of `url`, in ms, after one that warms caches."""
    assert client.get(url).status_code == 200, url
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, url
    return statistics.median(times)


def shape_observability(*, runs: int) -> dict:
    # What the earlier shapes left unfolded (a few hundred thousand events after wide fan-outs) is
    # folded first, as beat's fold does every 15 s: a scrape times the steady state, not a backlog.
    started = time.perf_counter()
    backlog = metrics_fold(max_batches=10**6)
    backlog_s = time.perf_counter() - started
    # A scrape's cost follows its label sets, not its runs: the earlier shapes made a workflow per
    # repeat (hundreds, with 200-step chains), far more than the seeded ten. Timed, then cleared.
    with override_settings(ALLOWED_HOSTS=["testserver"], CHORDFLOW_METRICS_REQUIRE_TOKEN=False):
        lines = Client().get("/metrics").content.count(b"\n")
        bench_scrape = {"ms": round(_timed(Client(), "/metrics", 3), 1), "lines": lines}
    MetricTotal.objects.all().delete()
    MetricRollup.objects.all().delete()
    started = time.perf_counter()
    seed(runs)
    seeded_s = time.perf_counter() - started
    user = get_user_model().objects.create_superuser("bench-metrics", "bench@localhost", "unused")
    client = Client()
    client.force_login(user)
    page = "/admin/executions/run/metrics/"
    with override_settings(ALLOWED_HOSTS=["testserver"], CHORDFLOW_METRICS_REQUIRE_TOKEN=False):
        return {
            "runs": Run.objects.count(),
            "seed_seconds": round(seeded_s, 1),
            "backlog_events": backlog,
            "bench_label_sets_scrape": bench_scrape,
            "backlog_fold_seconds": round(backlog_s, 1),
            "scrape_ms": round(_timed(Client(), "/metrics", 5), 1),
            "scrape_lines": Client().get("/metrics").content.count(b"\n"),
            "page_ms": {name: round(_timed(client, f"{page}?range={name}", 3), 1) for name in ("hour", "day", "week")},
        }
