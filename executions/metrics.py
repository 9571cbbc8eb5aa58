"""Metrics from the event log: a fold adds new RunEvents to running totals and to per-minute and
per-hour rollups, once each, whichever process folds.

Why not prometheus_client's own counters: prefork workers would need its multiprocess mode, whose
files pile up with worker churn and slow every scrape (prometheus/client_python #204, #367), and a
counter kept in a process dies with it. Every transition already writes a RunEvent in its own
transaction, so the counts are in the database: the fold reads the events past its cursor, adds
them to MetricTotal and MetricRollup rows and moves the cursor, all in one transaction under the
cursor's row lock. Nothing is added to the hot path, two folds never count an event twice, a crash
loses nothing, and a scrape reads a few hundred small rows however many runs exist.

The cursor must never pass an event that commits later. SQLite's single writer commits in id
order. On PostgreSQL ids are taken at insert; there each event carries its transaction's id and the
fold reads only events of transactions older than every transaction still running.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from executions.models import MetricCursor, MetricRollup, MetricTotal, Run, RunEvent
from workflows.services import version_spec_by_id

logger = logging.getLogger(__name__)

FOLD_BATCH = 5000  # events per transaction
# Histogram bounds in seconds (a last bucket, +Inf, follows each).
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
RUN_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 10800.0, 21600.0, 86400.0)
PERIODS = (60, 600, 3600)  # rollups: a row per minute, 10 minutes and hour (the hour, day and week views)
KEEP = {60: timedelta(days=2), 600: timedelta(days=8), 3600: timedelta(days=400)}  # then beat's fold drops them


class Series:
    """What MetricTotal.series and MetricRollup.series hold."""

    RUNS_STARTED = "runs_started"  # a count per workflow
    RUN_DURATION = "run_duration"  # a histogram per workflow and final status: its count is the runs finished
    ATTEMPTS = "attempts"  # attempts started, per step
    QUEUE_WAIT = "queue_wait"  # queued -> started of a step's (or branch's) first attempt
    STEP_DURATION = "step_duration"  # an attempt, by outcome: succeeded, failed, retrying, escalated
    RETRIES = "retries"  # attempts that failed with attempts left
    ESCALATIONS = "escalations"  # steps that failed and wait for an operator
    THROTTLED = "throttled"  # attempts parked until their rate-limit slot
    QUEUE_DEPTH = "queue_depth"  # rollups only: samples (status = the queue)
    APPROVALS_PENDING = "approvals_pending"  # rollups only: samples


BUCKETS = {Series.RUN_DURATION: RUN_BUCKETS, Series.QUEUE_WAIT: STEP_BUCKETS, Series.STEP_DURATION: STEP_BUCKETS}
RUN_ENDS = {"run.succeeded": "succeeded", "run.failed": "failed", "run.cancelled": "cancelled"}
ATTEMPT_ENDS = {"step.succeeded": "succeeded", "step.failed": "failed", "step.retrying": "retrying"}


class TotalKey(NamedTuple):
    series: str
    workflow: str
    step: str = ""
    queue: str = ""
    status: str = ""


class RollupKey(NamedTuple):
    period: int
    start: datetime
    series: str
    workflow: str
    status: str


@dataclass
class Tally:
    """What a fold adds to one row: a count, and a histogram's sum and per-bucket counts."""

    count: int = 0
    sum: float = 0.0
    buckets: list[int] = field(default_factory=list)

    def observe(self, bounds: tuple[float, ...] | None, value: float | None) -> None:
        self.count += 1
        if bounds is None or value is None:
            return
        if not self.buckets:
            self.buckets = [0] * (len(bounds) + 1)
        self.sum += value
        self.buckets[bisect.bisect_left(bounds, value)] += 1

    def add_to(self, row: MetricTotal | MetricRollup) -> None:
        row.count += self.count
        row.sum += self.sum
        if self.buckets:
            have = fit(row.buckets, len(self.buckets))
            row.buckets = [a + b for a, b in zip(have, self.buckets, strict=True)]


def fit(buckets: list[int] | None, size: int) -> list[int]:
    """Stored bucket counts as `size` buckets: rows written before a release changed the bounds keep
    their counts (cut or padded with zeros) rather than failing every fold and scrape."""
    have = list(buckets or [])[:size]
    return have + [0] * (size - len(have))


class Event(NamedTuple):
    id: int
    run_id: Any
    step: str
    kind: str
    data: dict
    at: datetime
    txid: int | None = None


# --- the fold -------------------------------------------------------------------------------------
def metrics_fold(
    *,
    batch: int = FOLD_BATCH,
    max_batches: int = 1000,
    samples: dict[RollupKey, Tally] | None = None,
    nowait: bool = False,
) -> int:
    """Fold every event that may be folded now; returns how many. One transaction per `batch` events.

    `samples`: gauge values to add to the rollups (beat's fold passes executions.gauges.samples(),
    every CHORDFLOW_METRICS_FOLD_INTERVAL seconds), and then old rollups are pruned. `nowait` (a
    scrape's fold): on PostgreSQL, raise at once (DatabaseError) when another fold holds the cursor.
    """
    if samples is not None:
        prune_rollups(timezone.now())
    elif not _anything_new():
        return 0  # nothing to fold: no write transaction (on SQLite, no write lock) for it
    pending = samples or {}
    folded = 0
    for _ in range(max_batches):
        count = _fold_batch(batch, pending, nowait)
        pending = {}
        folded += count
        if count < batch:
            break
    return folded


def prune_rollups(now: datetime) -> int:
    """Drop rollups older than any view reads (KEEP): each period's table stays a bounded size."""
    dropped = 0
    for period, keep in KEEP.items():
        dropped += MetricRollup.objects.filter(period=period, start__lt=now - keep).delete()[0]
    return dropped


def _fold_batch(limit: int, samples: dict[RollupKey, Tally], nowait: bool) -> int:
    with transaction.atomic():
        cursor = _lock_cursor(nowait)
        events = _read_events(cursor, limit)
        if events:
            totals, rollups = tally(events)
            _apply_totals(totals)
            _apply_rollups(rollups)
            _advance(cursor, events)
        if samples:
            _apply_rollups(samples)
        cursor.folded_at = timezone.now()
        cursor.save()
    return len(events)


def _lock_cursor(nowait: bool) -> MetricCursor:
    """The cursor, locked: PostgreSQL's row lock (SQLite's IMMEDIATE transaction holds the write lock)."""
    cursor = MetricCursor.objects.select_for_update(nowait=nowait and _postgres()).filter(pk=1).first()
    if cursor is None:  # a new database, or a test's flush
        MetricCursor.objects.get_or_create(pk=1)
        cursor = MetricCursor.objects.select_for_update().get(pk=1)
    return cursor


def _unfolded() -> tuple[str, list]:
    """The WHERE clause, and its parameters, of the events past the cursor (folded or not yet foldable)."""
    cursor = MetricCursor.objects.filter(pk=1).values_list("last_event_id", "last_txid", "history_done").first()
    last_id, last_txid, history_done = cursor or (0, 0, False)
    if not _postgres() or not history_done:
        return "id > %s", [last_id]
    return "txid IS NOT NULL AND (txid, id) > (%s, %s)", [last_txid, last_id]


def _anything_new() -> bool:
    where, params = _unfolded()
    table = connection.ops.quote_name(RunEvent._meta.db_table)
    with connection.cursor() as db:
        db.execute(f"SELECT 1 FROM {table} WHERE {where} LIMIT 1", params)  # noqa: S608
        return db.fetchone() is not None


def fold_lag() -> float:
    """Seconds since the oldest event not folded yet was written; 0 when the fold is caught up. On
    PostgreSQL a transaction left open anywhere on the server holds the fold back: this grows."""
    where, params = _unfolded()
    table = connection.ops.quote_name(RunEvent._meta.db_table)
    order = "txid, id" if "txid" in where else "id"
    with connection.cursor() as db:
        db.execute(f"SELECT created_at FROM {table} WHERE {where} ORDER BY {order} LIMIT 1", params)  # noqa: S608
        row = db.fetchone()
    if row is None:
        return 0.0
    at = row[0]
    if isinstance(at, str):  # SQLite hands raw SQL its text
        at = datetime.fromisoformat(at)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max((timezone.now() - at).total_seconds(), 0.0)


def _postgres() -> bool:
    return connection.vendor == "postgresql"


EVENT_COLUMNS = "id, run_id, step_id, kind, data, created_at"


def _read_events(cursor: MetricCursor, limit: int) -> list[Event]:
    if not _postgres():
        rows = RunEvent.objects.filter(id__gt=cursor.last_event_id).order_by("id")
        return [
            Event(*row) for row in rows.values_list("id", "run_id", "step_id", "kind", "data", "created_at")[:limit]
        ]
    table = connection.ops.quote_name(RunEvent._meta.db_table)
    with connection.cursor() as db:
        if not cursor.history_done:  # events written before the txid column: all committed long ago
            db.execute(
                f"SELECT {EVENT_COLUMNS}, txid FROM {table} WHERE txid IS NULL AND id > %s ORDER BY id LIMIT %s",  # noqa: S608
                [cursor.last_event_id, limit],
            )
            rows = db.fetchall()
            if len(rows) == limit:
                return [_pg_event(row) for row in rows]
            cursor.history_done = True
            if rows:
                return [_pg_event(row) for row in rows]
        db.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        (horizon,) = db.fetchone()
        db.execute(
            f"SELECT {EVENT_COLUMNS}, txid FROM {table} WHERE txid < %s AND (txid, id) > (%s, %s) "  # noqa: S608
            "ORDER BY txid, id LIMIT %s",
            [horizon, cursor.last_txid, cursor.last_event_id, limit],
        )
        return [_pg_event(row) for row in db.fetchall()]


def _pg_event(row: tuple) -> Event:
    id_, run_id, step, kind, data, at, txid = row
    if isinstance(data, str | bytes):  # Django has psycopg hand jsonb over as text
        data = json.loads(data)
    return Event(id_, run_id, step, kind, data if isinstance(data, dict) else {}, at, txid)


def _advance(cursor: MetricCursor, events: list[Event]) -> None:
    last = events[-1]
    if last.txid is None:
        cursor.last_event_id = last.id
    else:
        cursor.last_txid, cursor.last_event_id = last.txid, last.id


# --- what the events add up to (pure, but for looking up runs) ------------------------------------
@dataclass(frozen=True)
class RunLabels:
    workflow: str
    version_id: int
    content_hash: str
    started_at: datetime | None


def _run_labels(run_ids: Iterable[Any]) -> dict[Any, RunLabels]:
    found: dict[Any, RunLabels] = {}
    ids = list(set(run_ids))
    for start in range(0, len(ids), 500):
        rows = Run.objects.filter(pk__in=ids[start : start + 500]).values_list(
            "pk", "workflow__slug", "version_id", "version__content_hash", "started_at", "created_at"
        )
        for pk, slug, version_id, content_hash, started_at, created_at in rows:
            found[pk] = RunLabels(slug, version_id, content_hash, started_at or created_at)
    return found


def _queue_of(labels: RunLabels, step: str, cache: dict) -> str:
    key = (labels.version_id, step)
    if key not in cache:
        try:
            cache[key] = version_spec_by_id(labels.version_id, labels.content_hash).step(step).queue
        except Exception:  # a step the version no longer parses to: count it, on no queue
            logger.debug("metrics: no queue for step %s of version %s", step, labels.version_id, exc_info=True)
            cache[key] = ""
    return cache[key]


def tally(events: list[Event]) -> tuple[dict[TotalKey, Tally], dict[RollupKey, Tally]]:
    """What `events` add to the totals and to the rollups."""
    runs = _run_labels(event.run_id for event in events)
    queues: dict = {}
    totals: dict[TotalKey, Tally] = defaultdict(Tally)
    rollups: dict[RollupKey, Tally] = defaultdict(Tally)
    for event in events:
        labels = runs.get(event.run_id)
        if labels is None:
            continue  # its run is gone (a fold far behind retention): nothing to label it with
        for series, step, status, value in observations(event, labels):
            queue = _queue_of(labels, step, queues) if step else ""
            key = TotalKey(series, labels.workflow, step, queue, status)
            if series == Series.ESCALATIONS:
                key = key._replace(queue="")
            totals[key].observe(BUCKETS.get(series), value)
            for period in PERIODS:
                rollup = RollupKey(period, floor(event.at, period), series, labels.workflow, status)
                rollups[rollup].observe(BUCKETS.get(series), value)
    return totals, rollups


def observations(event: Event, labels: RunLabels) -> Iterator[tuple[str, str, str, float | None]]:
    """(series, step, status, value) for each thing `event` counts."""
    kind, data, step = event.kind, event.data, event.step
    if kind == "run.started" and not data.get("resumed") and not data.get("retry"):
        yield Series.RUNS_STARTED, "", "", None
    elif kind in RUN_ENDS:
        started = labels.started_at or event.at
        yield Series.RUN_DURATION, "", RUN_ENDS[kind], max((event.at - started).total_seconds(), 0.0)
    if kind == "step.throttled":
        yield Series.THROTTLED, step, "", None
        return
    if "attempt" not in data or not step:
        if data.get("escalated"):
            yield Series.ESCALATIONS, step, "", None
        return
    if kind == "step.started":
        yield Series.ATTEMPTS, step, "", None
        if data.get("wait") is not None:
            yield Series.QUEUE_WAIT, step, "", float(data["wait"])
        return
    outcome = "escalated" if data.get("escalated") else ATTEMPT_ENDS.get(kind)
    if outcome is not None and data.get("duration") is not None:
        yield Series.STEP_DURATION, step, outcome, float(data["duration"])
    if kind == "step.retrying":
        yield Series.RETRIES, step, "", None
    if data.get("escalated"):
        yield Series.ESCALATIONS, step, "", None


def floor(moment: datetime, period: int) -> datetime:
    seconds = int(moment.timestamp()) // period * period
    return datetime.fromtimestamp(seconds, tz=UTC)


# --- writing the sums -----------------------------------------------------------------------------
def _apply_totals(totals: dict[TotalKey, Tally]) -> None:
    existing = {
        TotalKey(row.series, row.workflow, row.step, row.queue, row.status): row
        for row in MetricTotal.objects.filter(workflow__in={key.workflow for key in totals})
    }
    _apply(totals, existing, lambda key: MetricTotal(**key._asdict()), MetricTotal)


def _apply_rollups(rollups: dict[RollupKey, Tally]) -> None:
    existing: dict[RollupKey, MetricRollup] = {}
    for period in PERIODS:
        starts = {key.start for key in rollups if key.period == period}
        for row in MetricRollup.objects.filter(period=period, start__in=starts):
            existing[RollupKey(row.period, row.start, row.series, row.workflow, row.status)] = row
    _apply(rollups, existing, lambda key: MetricRollup(**key._asdict()), MetricRollup)


def _apply(tallies: dict, existing: dict, new: Callable[[Any], Any], model: type) -> None:
    created, changed = [], []
    for key, delta in tallies.items():
        row = existing.get(key)
        if row is None:
            row = new(key)
            created.append(row)
        else:
            changed.append(row)
        delta.add_to(row)
    model.objects.bulk_create(created, batch_size=500)
    model.objects.bulk_update(changed, ["count", "sum", "buckets"], batch_size=500)
