"""The admin's metrics page: runs per minute, outcomes per workflow, step and queue-wait percentiles,
retry and escalation rates, queue depth and pending approvals over the last hour, day or week.

It reads only the rollups the metrics fold writes (executions.metrics): a row per series, workflow
and minute (the hour view), ten minutes (the day) or hour (the week), so its cost follows the range
and the number of workflows, never the number of runs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from executions.charts import Line, empty, fmt, line_chart
from executions.gauges import gauges
from executions.metrics import BUCKETS, STEP_BUCKETS, Series, Tally, fit, floor
from executions.models import MetricRollup
from executions.run_page import PALETTE
from executions.states import RunStatus, StepStatus
from workflows.models import Workflow


@dataclass(frozen=True)
class Range:
    name: str
    span: timedelta
    period: int  # seconds a bin holds: a rollup row's period
    time_format: str


RANGES = {
    "hour": Range("hour", timedelta(hours=1), 60, "%H:%M"),
    "day": Range("day", timedelta(days=1), 600, "%H:%M"),
    "week": Range("week", timedelta(days=7), 3600, "%a %H:%M"),
}
SERIES_COLORS = ["#1f6fd1", "#e68a00", "#2e9e3e", "#9467bd", "#d62728", "#17a2b8", "#8c564b", "#e377c2"]


def bin_starts(chosen: Range, now: datetime) -> list[datetime]:
    """The starts of the range's bins, oldest first; the last holds `now`."""
    count = int(chosen.span.total_seconds() // chosen.period)
    last = floor(now, chosen.period)
    return [last - timedelta(seconds=chosen.period * (count - 1 - i)) for i in range(count)]


def quantile(q: float, counts: list[int], bounds: tuple[float, ...]) -> float | None:
    """The q-quantile of a histogram, interpolated within its bucket (as Prometheus' histogram_quantile)."""
    total = sum(counts)
    if not total:
        return None
    rank, seen = q * total, 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            if i >= len(bounds):  # the +Inf bucket: the highest bound is all we know
                return bounds[-1]
            lower = bounds[i - 1] if i else 0.0
            return lower + (bounds[i] - lower) * (rank - seen) / count
        seen += count
    return bounds[-1]


def _merged(tallies: list[Tally]) -> Tally:
    merged = Tally()
    for tally in tallies:
        merged.count += tally.count
        merged.sum += tally.sum
        if tally.buckets:
            have = fit(merged.buckets, len(tally.buckets))
            merged.buckets = [a + b for a, b in zip(have, tally.buckets, strict=True)]
    return merged


class Rollups:
    """The range's rollup rows, as tallies by (series, status) and bin, and by workflow."""

    def __init__(self, chosen: Range, starts: list[datetime], workflow: str | None) -> None:
        self.index = {start: i for i, start in enumerate(starts)}
        self.bins: dict[tuple[str, str], list[Tally]] = defaultdict(lambda: [Tally() for _ in starts])
        self.by_workflow: dict[str, dict[tuple[str, str], Tally]] = defaultdict(lambda: defaultdict(Tally))
        self.samples_taken = [0] * len(starts)  # folds that sampled the gauges, per bin
        rows = MetricRollup.objects.filter(period=chosen.period, start__gte=starts[0])
        if workflow is not None:
            rows = rows.filter(workflow__in=[workflow, ""])
        for start, series, slug, status, count, total, buckets in rows.values_list(
            "start", "series", "workflow", "status", "count", "sum", "buckets"
        ):
            i = self.index.get(start)
            if i is None:
                continue
            tally = Tally(count, total, list(buckets or []))
            if series == Series.APPROVALS_PENDING and not slug:
                self.samples_taken[i] += count  # the all-workflows sample: taken at every fold, zero or not
                if workflow is not None:
                    continue
            elif series == Series.APPROVALS_PENDING and workflow is None:
                continue  # the total above already holds it
            self.bins[(series, status)][i] = _merged([self.bins[(series, status)][i], tally])
            if slug and series != Series.APPROVALS_PENDING:
                self.by_workflow[slug][(series, status)] = _merged([self.by_workflow[slug][(series, status)], tally])

    def counts(self, series: str, status: str = "") -> list[int]:
        return [tally.count for tally in self.bins[(series, status)]]

    def across(self, series: str, statuses: tuple[str, ...]) -> list[Tally]:
        """Per bin, `series` merged over `statuses`."""
        return [_merged([self.bins[(series, status)][i] for status in statuses]) for i in range(len(self.index))]

    def statuses(self, series: str) -> list[str]:
        return sorted(status for (name, status) in self.bins if name == series)


NO_DATA = "-"  # a figure of a range without data
ATTEMPT_OUTCOMES = ("succeeded", "failed", "retrying", "escalated")
RUN_OUTCOMES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


def page_context(*, range_name: str, workflow: str | None, now: datetime | None = None) -> dict:
    chosen = RANGES[range_name]
    now = now or timezone.now()
    starts = bin_starts(chosen, now)
    data = Rollups(chosen, starts, workflow)
    minutes = chosen.period / 60
    draw = {"starts": starts, "time_format": chosen.time_format}

    started = data.counts(Series.RUNS_STARTED)
    finished = {status: data.counts(Series.RUN_DURATION, status) for status in RUN_OUTCOMES}
    durations = data.across(Series.STEP_DURATION, ATTEMPT_OUTCOMES)
    waits = data.across(Series.QUEUE_WAIT, ("",))
    attempts = data.counts(Series.ATTEMPTS)
    retries, escalations = data.counts(Series.RETRIES), data.counts(Series.ESCALATIONS)

    def rate(part: list[int]) -> tuple[float | None, ...]:
        return tuple(100 * p / a if a else None for p, a in zip(part, attempts, strict=True))

    charts = [
        line_chart(
            title="Runs started per minute",
            lines=[Line("started", SERIES_COLORS[0], tuple(n / minutes for n in started))],
            unit="", **draw,
        ),
        line_chart(
            title=f"Runs finished per {_bin_words(chosen)}",
            lines=[Line(status, PALETTE[status], tuple(float(n) for n in finished[status])) for status in RUN_OUTCOMES],
            **draw,
        ),
        _percentile_chart("Step attempt duration", durations, draw),
        _percentile_chart("Queue wait (queued to started)", waits, draw),
        line_chart(
            title="Retry and escalation rate (of attempts)",
            lines=[
                Line("retries", PALETTE[StepStatus.RETRYING], rate(retries)),
                Line("escalations", PALETTE[StepStatus.WAITING], rate(escalations)),
            ],
            unit="%", **draw,
        ),
        _sampled_chart(data, Series.QUEUE_DEPTH, "Queue depth (average of samples)", draw),
        _sampled_chart(data, Series.APPROVALS_PENDING, "Pending approvals (average of samples)", draw),
    ]  # fmt: skip

    all_durations, all_waits = _merged(durations), _merged(waits)
    total_attempts = sum(attempts)
    now_values = gauges(sampled=True)
    tiles = [
        ("Runs per minute", fmt(sum(started) / (chosen.span.total_seconds() / 60))),
        ("Succeeded", f"{sum(finished[RunStatus.SUCCEEDED]):,}"),
        ("Failed", f"{sum(finished[RunStatus.FAILED]):,}"),
        ("Step p50 / p95", _pair(all_durations)),
        ("Queue wait p50 / p95", _pair(all_waits)),
        ("Retry rate", fmt(100 * sum(retries) / total_attempts, "%") if total_attempts else NO_DATA),
        ("Escalation rate", fmt(100 * sum(escalations) / total_attempts, "%") if total_attempts else NO_DATA),
        ("Queued now", fmt(sum(v for s, _, v in now_values if s == Series.QUEUE_DEPTH))),
        (
            "Approvals pending now",
            fmt(
                sum(
                    v
                    for s, labels, v in now_values
                    if s == Series.APPROVALS_PENDING and workflow in (None, labels.get("workflow"))
                )
            ),
        ),
    ]
    return {"charts": charts, "tiles": tiles, "workflows": _workflow_rows(data), "range": chosen}


def _percentile_chart(title: str, tallies: list[Tally], draw: dict):
    def percentiles(q: float) -> tuple[float | None, ...]:
        return tuple(quantile(q, t.buckets, STEP_BUCKETS) if t.buckets else None for t in tallies)

    lines = [Line("p50", SERIES_COLORS[0], percentiles(0.5)), Line("p95", SERIES_COLORS[1], percentiles(0.95))]
    return line_chart(title=title, lines=lines, unit="s", **draw)


def _bin_words(chosen: Range) -> str:
    return {60: "minute", 600: "10 minutes", 3600: "hour"}[chosen.period]


def _pair(tally: Tally) -> str:
    if not tally.buckets:
        return NO_DATA
    p50, p95 = (quantile(q, tally.buckets, STEP_BUCKETS) for q in (0.5, 0.95))
    return f"{fmt(p50, 's')} / {fmt(p95, 's')}"


def _sampled_chart(data: Rollups, series: str, title: str, draw: dict):
    """A gauge's history: per bin, the sum of its labels' sample averages (one line per queue)."""
    statuses = data.statuses(series)
    if not statuses:
        return empty(title)
    lines = []
    for n, status in enumerate(statuses):
        values = []
        for i, tally in enumerate(data.bins[(series, status)]):
            taken = data.samples_taken[i] if series == Series.APPROVALS_PENDING else tally.count
            values.append(tally.sum / taken if taken else None)
        lines.append(Line(status or "all", SERIES_COLORS[n % len(SERIES_COLORS)], tuple(values)))
    return line_chart(title=title, lines=lines, **draw)


def _workflow_rows(data: Rollups) -> list[dict]:
    rows = []
    for slug in sorted(data.by_workflow):
        tallies = data.by_workflow[slug]
        durations = _merged([tallies[(Series.STEP_DURATION, status)] for status in ATTEMPT_OUTCOMES])
        done = {status: tallies[(Series.RUN_DURATION, status)].count for status in RUN_OUTCOMES}
        finished = sum(done.values())
        run_time = _merged([tallies[(Series.RUN_DURATION, status)] for status in RUN_OUTCOMES])
        rows.append(
            {
                "workflow": slug,
                "started": tallies[(Series.RUNS_STARTED, "")].count,
                **done,
                "success": fmt(100 * done[RunStatus.SUCCEEDED] / finished, "%") if finished else NO_DATA,
                "run_p50": fmt(quantile(0.5, run_time.buckets, BUCKETS[Series.RUN_DURATION]), "s")
                if run_time.buckets
                else NO_DATA,
                "step_p50_p95": _pair(durations),
                "retries": tallies[(Series.RETRIES, "")].count,
                "escalations": tallies[(Series.ESCALATIONS, "")].count,
            }
        )
    return rows


def metrics_response(request: HttpRequest, admin_context: dict, opts) -> TemplateResponse:
    """The page, or the same page with what is wrong and status 400 for an unknown range or workflow."""
    range_name = request.GET.get("range", "hour")
    workflow = request.GET.get("workflow") or None
    slugs = list(Workflow.objects.order_by("slug").values_list("slug", flat=True))
    problems = []
    if range_name not in RANGES:
        problems.append(f"range={range_name!r} is not one of: {', '.join(RANGES)}")
    if workflow is not None and workflow not in slugs:
        problems.append(f"workflow={workflow!r}: no workflow has that slug")
    context = {
        **admin_context,
        "opts": opts,
        "title": "Metrics",
        "ranges": list(RANGES),
        "slugs": slugs,
        "chosen_range": range_name,
        "chosen_workflow": workflow,
        "problems": problems,
    }
    if not problems:
        context.update(page_context(range_name=range_name, workflow=workflow))
    return TemplateResponse(request, "admin/executions/metrics.html", context, status=400 if problems else 200)
