"""GET /metrics: the folded totals and the gauges, in Prometheus' text format (prometheus_client).

A scrape folds what is new first (executions.metrics), then reads MetricTotal (a row per label set)
and the gauges. Labels are workflow, step, queue, status, schedule and outcome, never a run id.
"""

from __future__ import annotations

import hmac
import logging
from collections import defaultdict
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from executions.gauges import gauges
from executions.metrics import BUCKETS, Series, fit, metrics_fold
from executions.models import MetricTotal

logger = logging.getLogger(__name__)

# series -> (metric name, help, its labels); a counter's or histogram's labels come from MetricTotal.
COUNTERS = {
    Series.RUNS_STARTED: ("chordflow_runs_started_total", "Runs started.", ("workflow",)),
    Series.ATTEMPTS: ("chordflow_step_attempts_total", "Step attempts started.", ("workflow", "step", "queue")),
    Series.RETRIES: (
        "chordflow_step_retries_total",
        "Step attempts that failed and will be retried.",
        ("workflow", "step", "queue"),
    ),
    Series.THROTTLED: (
        "chordflow_step_throttled_total",
        "Step attempts parked until their rate-limit slot.",
        ("workflow", "step", "queue"),
    ),
    Series.ESCALATIONS: (
        "chordflow_escalations_total",
        "Steps that failed and were escalated to an operator.",
        ("workflow", "step"),
    ),
}
HISTOGRAMS = {
    Series.RUN_DURATION: ("chordflow_run_duration_seconds", "Runs, start to finish.", ("workflow", "status")),
    Series.QUEUE_WAIT: (
        "chordflow_step_queue_wait_seconds",
        "Steps' first attempts, queued to started.",
        ("workflow", "step", "queue"),
    ),
    Series.STEP_DURATION: (
        "chordflow_step_duration_seconds",
        "Step attempts, started to their outcome (status).",
        ("workflow", "step", "queue", "status"),
    ),
}
GAUGES = {
    "runs_active": ("chordflow_runs_active", "Unfinished runs.", ("workflow", "status"), "gauge"),
    "queue_depth": ("chordflow_queue_depth", "Messages waiting in the broker queue.", ("queue",), "gauge"),
    "approvals_pending": ("chordflow_approvals_pending", "Approvals waiting for a decision.", ("workflow",), "gauge"),
    "schedule_lag": (
        "chordflow_schedule_lag_seconds",
        "How late the schedule's oldest due time is (0 when on time).",
        ("workflow", "schedule"),
        "gauge",
    ),
    "fold_lag": (
        "chordflow_metrics_fold_lag_seconds",
        "Age of the oldest run event not yet counted (0 when the counters are current).",
        (),
        "gauge",
    ),
    "schedule_fires": (
        "chordflow_schedule_fires_total",
        "Schedule fires by outcome.",
        ("workflow", "schedule", "outcome"),
        "counter",
    ),
}


FINISHED = ("chordflow_runs_finished_total", "Runs finished, by status.", ("workflow", "status"))


def catalog() -> dict[str, tuple[str, set[str]]]:
    """Every series /metrics serves: name -> (type, labels). The docs' alert rules are checked against it."""
    found = {name: ("counter", set(labels)) for name, _, labels in (*COUNTERS.values(), FINISHED)}
    found |= {name: ("histogram", set(labels)) for name, _, labels in HISTOGRAMS.values()}
    found |= {name: (kind, set(labels)) for name, _, labels, kind in GAUGES.values()}
    return found


def _labels(row: MetricTotal, names: tuple[str, ...]) -> list[str]:
    return [getattr(row, name) for name in names]


def total_families() -> Iterator[Metric]:
    rows = list(MetricTotal.objects.order_by("series", "workflow", "step", "queue", "status"))
    counters = {series: CounterMetricFamily(name, doc, labels=names) for series, (name, doc, names) in COUNTERS.items()}
    histograms = {
        series: HistogramMetricFamily(name, doc, labels=names) for series, (name, doc, names) in HISTOGRAMS.items()
    }
    finished = CounterMetricFamily(FINISHED[0], FINISHED[1], labels=FINISHED[2])
    merged: dict[tuple, int] = defaultdict(int)  # a counter whose rows differ only by labels it does not show
    for row in rows:
        if row.series in COUNTERS:
            merged[(row.series, *_labels(row, COUNTERS[row.series][2]))] += row.count
        elif row.series in HISTOGRAMS:
            names = HISTOGRAMS[row.series][2]
            histograms[row.series].add_metric(_labels(row, names), _buckets(row), row.sum)
            if row.series == Series.RUN_DURATION:
                finished.add_metric([row.workflow, row.status], row.count)
    for (series, *labels), count in merged.items():
        counters[series].add_metric(labels, count)
    yield counters[Series.RUNS_STARTED]
    yield finished
    yield from (family for series, family in counters.items() if series != Series.RUNS_STARTED)
    yield from histograms.values()


def _buckets(row: MetricTotal) -> list[tuple[str, float]]:
    bounds = BUCKETS[row.series]
    counts = fit(row.buckets, len(bounds) + 1)
    cumulative, out = 0, []
    for bound, count in zip([*map(str, bounds), "+Inf"], counts, strict=True):
        cumulative += count
        out.append((bound, cumulative))
    return out


def gauge_families() -> Iterator[Metric]:
    families: dict[str, Metric] = {}
    for series, (name, doc, names, kind) in GAUGES.items():
        family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        families[series] = family(name, doc, labels=names)
    for series, labels, value in gauges():
        if series in families:
            families[series].add_metric([labels.get(name, "") for name in GAUGES[series][2]], value)
    yield from families.values()


class ChordflowCollector:
    def collect(self) -> Iterator[Metric]:
        yield from total_families()
        yield from gauge_families()


registry = CollectorRegistry(auto_describe=False)
registry.register(ChordflowCollector())


def authorized(request: HttpRequest) -> bool:
    """`Authorization: Bearer <CHORDFLOW_METRICS_TOKEN>`, compared in constant time. Without a token set,
    closed to everyone, unless CHORDFLOW_METRICS_REQUIRE_TOKEN is off (local and test settings; the
    production settings force it on)."""
    token = settings.CHORDFLOW_METRICS_TOKEN
    if not token:
        return not settings.CHORDFLOW_METRICS_REQUIRE_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not authorized(request):
        response = HttpResponse("401 Unauthorized: send Authorization: Bearer $CHORDFLOW_METRICS_TOKEN\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        response["Content-Type"] = "text/plain; charset=utf-8"
        return response
    try:
        metrics_fold(max_batches=settings.CHORDFLOW_METRICS_SCRAPE_FOLD_BATCHES, nowait=True)
    except DatabaseError:  # another fold holds the cursor (PostgreSQL): serve what it has folded so far
        logger.warning("metrics: the scrape's fold failed; serving the totals folded so far", exc_info=True)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
