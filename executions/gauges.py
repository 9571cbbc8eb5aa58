"""Gauges: values read when /metrics is scraped, not counted from events. The registry any app adds
its readers to (approvals adds pending approvals), the samples beat's fold adds to the rollups, and
the runtime's own readers: active runs, queue depth, schedule lag, the fold's lag, and the fires of
schedules (counted from their rows: a fire is not a run event)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from django.db.models import Count, Max
from django.utils import timezone

from executions import metrics
from executions.dispatch import queue_depths
from executions.metrics import PERIODS, RollupKey, Series, Tally, floor
from executions.models import MetricTotal, Run, Schedule, ScheduleFire
from executions.states import RUN_UNFINISHED, FireOutcome
from workflows.models import Workflow, WorkflowVersion
from workflows.services import version_spec_by_id
from workflows.spec import DEFAULT_QUEUE

logger = logging.getLogger(__name__)

Gauge = tuple[str, dict[str, str], float]


# --- the registry: read at scrape, the sampled ones also by beat's fold ---------------------------
GaugeReader = Callable[[], Iterable[Gauge]]
_gauges: dict[GaugeReader, bool] = {}  # reader -> whether beat's fold samples it into the rollups


def register_gauge(reader: GaugeReader, *, sampled: bool = False) -> None:
    """`reader()` yields (series, labels, value) of a gauge read now; an app on the runtime adds its own.
    `sampled`: the metrics page draws its history (queue depth, pending approvals)."""
    _gauges[reader] = sampled


def gauges(*, sampled: bool = False) -> list[Gauge]:
    """Every registered gauge's current values (`sampled`: only those the page draws); a reader that
    fails is logged and left out."""
    values = []
    for reader, is_sampled in list(_gauges.items()):
        if sampled and not is_sampled:
            continue
        try:
            values.extend(reader())
        except Exception:
            logger.warning("metrics: the gauge %r could not be read", reader, exc_info=True)
    return values


def samples(now: datetime | None = None) -> dict[RollupKey, Tally]:
    """The sampled gauges' values now (queue depth, pending approvals) as rollup samples, for beat's
    fold to add: the metrics page draws their history.

    Pending approvals are also sampled for all workflows together (workflow ""), zero included: its
    count is the number of samples a bin holds, which a workflow with none pending does not report.
    """
    now = now or timezone.now()
    found: dict[RollupKey, Tally] = defaultdict(Tally)

    def add(series: str, workflow: str, status: str, value: float) -> None:
        for period in PERIODS:
            sample = found[RollupKey(period, floor(now, period), series, workflow, status)]
            sample.count += 1
            sample.sum += value

    pending = 0.0
    for series, labels, value in gauges(sampled=True):
        if series == Series.QUEUE_DEPTH:
            add(series, "", labels.get("queue", ""), value)
        elif series == Series.APPROVALS_PENDING:
            add(series, labels.get("workflow", ""), "", value)
            pending += value
    add(Series.APPROVALS_PENDING, "", "", pending)
    return found


def runs_active() -> Iterator[Gauge]:
    """Unfinished runs per workflow and status (pending ones wait for a concurrency slot), 0 included
    for every active workflow, so an alert sees 0 rather than no data. The index on (status,
    created_at) keeps this to the unfinished rows, however many finished runs there are."""
    rows = (
        Run.objects.filter(status__in=RUN_UNFINISHED)
        .values_list("workflow__slug", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts = {(workflow, status): count for workflow, status, count in rows}
    for workflow in Workflow.objects.filter(active=True).values_list("slug", flat=True):
        for status in sorted(RUN_UNFINISHED):
            counts.setdefault((workflow, status), 0)
    for (workflow, status), count in sorted(counts.items()):
        yield "runs_active", {"workflow": workflow, "status": status}, float(count)


def fold_lag() -> Iterator[Gauge]:
    yield "fold_lag", {}, metrics.fold_lag()


def known_queues() -> list[str]:
    """The default queue, every queue a current workflow version's step names, and every queue a
    counted step ran on."""
    queues = {DEFAULT_QUEUE}
    latest = Workflow.objects.filter(active=True).annotate(latest=Max("versions__id")).values_list("latest", flat=True)
    versions = WorkflowVersion.objects.filter(pk__in=[pk for pk in latest if pk]).values_list("pk", "content_hash")
    for pk, content_hash in versions:  # parsed once per process (the spec cache)
        try:
            queues.update(step.queue for step in version_spec_by_id(pk, content_hash).steps)
        except Exception:
            logger.debug("metrics: version %s does not parse", pk, exc_info=True)
    queues.update(MetricTotal.objects.exclude(queue="").values_list("queue", flat=True).distinct())
    return sorted(queues)


def queue_depth() -> Iterator[Gauge]:
    """Messages waiting in each known queue of the broker (not those workers have reserved); 0 for a
    queue the broker does not know yet."""
    for queue, depth in queue_depths(known_queues()).items():
        yield "queue_depth", {"queue": queue}, float(depth or 0)


def schedule_lag() -> Iterator[Gauge]:
    """Seconds the oldest due time of each running schedule is late; 0 when it is not due yet. A tick
    that keeps up holds it near 0; beat down, or a tick failing, makes it grow."""
    now = timezone.now()
    rows = Schedule.objects.filter(paused=False).values_list("workflow__slug", "name", "next_due_at")
    for workflow, name, due in rows:
        lag = max((now - due).total_seconds(), 0.0) if due is not None else 0.0
        yield "schedule_lag", {"workflow": workflow, "schedule": name}, lag


def schedule_fires() -> Iterator[Gauge]:
    """Fires per schedule and outcome, from the fire rows (retention keeps them). A buffered fire is
    counted once it has its final outcome, so each count only grows."""
    rows = (
        ScheduleFire.objects.exclude(outcome=FireOutcome.BUFFERED)
        .values_list("schedule__workflow__slug", "schedule__name", "outcome")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for workflow, name, outcome, count in rows:
        yield "schedule_fires", {"workflow": workflow, "schedule": name, "outcome": outcome}, float(count)
