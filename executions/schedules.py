"""Writes for schedules: save, pause, resume, the beat tick, trigger now, backfill, and the release
of buffered fires when a run finishes.

Exactly once per nominal time: every fire is a ScheduleFire row unique on (schedule, nominal time),
inserted before anything is started, so two beats, a restarted beat or a tick run twice find the
row and start nothing. The tick reads only schedules whose `next_due_at` has come (an index), so
its cost follows what is due, not how many schedules exist.
"""

from __future__ import annotations

import logging
from collections import Counter
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from executions import cron, events
from executions.exceptions import RunNotAllowedError, ScheduleError
from executions.models import Run, Schedule, ScheduleFire
from executions.runs import run_cancel, run_start
from executions.states import RUN_UNFINISHED, FireOutcome, Overlap
from workflows.definition import validate_input
from workflows.exceptions import InputValidationError, Problem
from workflows.models import Workflow
from workflows.services import version_spec

logger = logging.getLogger(__name__)
Fire = FireOutcome

TICK_BATCH = 500  # schedules per tick; the next tick (a second later) takes the rest
CATCH_UP_LIMIT = 1000  # nominal times one schedule walks through in one tick
BACKFILL_LIMIT = 1000
MAX_JITTER = 86_400  # a day
MAX_CATCHUP_WINDOW = 366 * 86_400  # a year
CATCHUP_GRACE = 10  # seconds a tick may be late before a fire counts against catchup_window
TIMING = ("cron", "timezone", "start_at", "end_at", "remaining_runs", "jitter", "paused")
FIELDS = (
    "name", "cron", "timezone", "input", "overlap", "catchup_window", "paused", "note",
    "start_at", "end_at", "remaining_runs", "jitter",
)  # fmt: skip
DEFAULTS: dict[str, Any] = {
    "timezone": "UTC", "input": {}, "overlap": Overlap.SKIP, "catchup_window": 3600, "paused": False,
    "note": "", "start_at": None, "end_at": None, "remaining_runs": None, "jitter": 0,
}  # fmt: skip


# --- saving ---------------------------------------------------------------------------------------
def _when(value: Any, field: str, problems: list[Problem]) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed = value if isinstance(value, datetime) else parse_datetime(value) if isinstance(value, str) else None
    except ValueError:  # well-formed but impossible: February 30th, an offset of +25:00
        parsed = None
    if parsed is None or not 2000 <= parsed.year <= 2999:
        problems.append(
            Problem(field, "must be an ISO 8601 date and time, e.g. 2026-12-01T09:00:00+01:00 (years 2000-2999)")
        )
        return None
    if timezone.is_naive(parsed):
        problems.append(Problem(field, "must carry its offset (e.g. +00:00 or Z): a time without one is ambiguous"))
        return None
    return parsed


def _count(value: Any, field: str, problems: list[Problem], *, most: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
        problems.append(Problem(field, f"must be a whole number from 0 to {most}" + (" or null" if allow_none else "")))
        return None
    return value


def clean(workflow: Workflow, values: dict[str, Any]) -> dict[str, Any]:
    """The schedule's fields, checked and normalised; ScheduleError lists every problem by field."""
    unknown = sorted(set(values) - set(FIELDS))
    problems = [Problem(key, f"unknown field (allowed: {', '.join(FIELDS)})") for key in unknown]
    data = {**DEFAULTS, **{k: v for k, v in values.items() if k in FIELDS}}
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        problems.append(Problem("name", "is required: up to 100 characters"))
    for key in ("cron", "timezone"):
        if not isinstance(data.get(key), str):
            problems.append(Problem(key, "is required" if key == "cron" else "must be an IANA time zone name"))
    if isinstance(data.get("cron"), str):
        try:
            cron.check(data["cron"])
        except cron.CronError as exc:
            problems.append(Problem("cron", str(exc)))
    if isinstance(data.get("timezone"), str):
        try:
            cron.zone(data["timezone"])
        except cron.CronError as exc:
            problems.append(Problem("timezone", str(exc)))
    if data["overlap"] not in Overlap.values:
        problems.append(Problem("overlap", f"must be one of: {', '.join(Overlap.values)}"))
    if not isinstance(data["paused"], bool):
        problems.append(Problem("paused", "must be true or false"))
    if not isinstance(data["note"], str):
        problems.append(Problem("note", "must be a string"))
    data["catchup_window"] = _count(data["catchup_window"], "catchup_window", problems, most=MAX_CATCHUP_WINDOW)
    data["jitter"] = _count(data["jitter"], "jitter", problems, most=MAX_JITTER)
    data["remaining_runs"] = _count(data["remaining_runs"], "remaining_runs", problems, most=2**31 - 1, allow_none=True)
    if data["input"] is None:
        data["input"] = {}
    data["start_at"] = _when(data["start_at"], "start_at", problems)
    data["end_at"] = _when(data["end_at"], "end_at", problems)
    if data["start_at"] and data["end_at"] and data["end_at"] <= data["start_at"]:
        problems.append(Problem("end_at", "must be after start_at"))
    version = workflow.latest_version()
    if version is not None:
        try:
            validate_input(version_spec(version), data["input"])
        except InputValidationError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ScheduleError(problems)
    return data


def schedule_save(
    *, workflow: Workflow, values: dict[str, Any], schedule: Schedule | None = None, now: datetime | None = None
) -> Schedule:
    """Create a schedule, or change one (`values` then holds only what changes).

    A change of its timing (cron, time zone, bounds, jitter, remaining runs, pause) computes the next
    fire from now; any other change (input, overlap, note, ...) keeps the fire that is pending.
    """
    try:
        return _save(workflow, values, schedule, now)
    except IntegrityError:  # two saves of one new name at once: the second one loses
        name = values.get("name", getattr(schedule, "name", ""))
        raise ScheduleError([Problem("name", f"workflow {workflow.slug!r} has a schedule named {name!r}")]) from None


def _save(workflow: Workflow, values: dict[str, Any], schedule: Schedule | None, now: datetime | None) -> Schedule:
    with transaction.atomic():
        if schedule is not None:  # read it again under a lock: a tick may have moved it meanwhile
            schedule = Schedule.objects.select_for_update(of=("self",)).get(pk=schedule.pk)
        current = {field: getattr(schedule, field) for field in FIELDS} if schedule is not None else {}
        data = clean(workflow, {**current, **values})
        retime = schedule is None or any(data[field] != current[field] for field in TIMING)
        schedule = schedule or Schedule(workflow=workflow)
        for field, value in data.items():
            setattr(schedule, field, value)
        if Schedule.objects.filter(workflow=workflow, name=data["name"]).exclude(pk=schedule.pk).exists():
            raise ScheduleError([Problem("name", f"workflow {workflow.slug!r} has a schedule named {data['name']!r}")])
        if schedule.pk is None:
            schedule.save()  # the jitter of a fire derives from the schedule's id
        if retime:
            _plan_next(schedule, after=now or timezone.now())
        schedule.save()
    return schedule


def _plan_next(schedule: Schedule, *, after: datetime) -> None:
    """Point the schedule at its first nominal time after `after` (and not before start_at)."""
    if schedule.start_at is not None and schedule.start_at > after:
        after = schedule.start_at - timedelta(microseconds=1)
    exhausted = schedule.remaining_runs == 0
    nominal = None if exhausted else cron.next_after(schedule.cron, schedule.timezone, after, end_at=schedule.end_at)
    schedule.next_fire_at = nominal
    schedule.next_due_at = _due(schedule, nominal) if nominal is not None and not schedule.paused else None


def _due(schedule: Schedule, nominal: datetime) -> datetime:
    return nominal + cron.jitter_offset(schedule.pk or 0, nominal, schedule.jitter)


def schedule_pause(*, schedule: Schedule, note: str = "") -> Schedule:
    schedule.paused, schedule.note, schedule.next_due_at = True, note, None
    schedule.save(update_fields=["paused", "note", "next_due_at", "updated_at"])
    return schedule


def schedule_resume(*, schedule: Schedule, now: datetime | None = None) -> Schedule:
    """Fire again from now on: times that passed while it was paused are neither started nor missed."""
    schedule.paused, schedule.note = False, ""
    _plan_next(schedule, after=now or timezone.now())
    schedule.save(update_fields=["paused", "note", "next_fire_at", "next_due_at", "updated_at"])
    return schedule


# --- firing ---------------------------------------------------------------------------------------
def schedule_tick(now: datetime | None = None) -> dict[str, int]:
    """Run by beat every second: fire what is due, catch up what was missed, record what is too old."""
    now = now or timezone.now()
    counts: Counter[str] = Counter()
    due = Schedule.objects.filter(next_due_at__lte=now).order_by("next_due_at").values_list("pk", flat=True)
    for schedule_id in list(due[:TICK_BATCH]):
        try:
            with transaction.atomic(), events.event_batch():
                # Another beat's tick may hold it: skip it rather than wait (on SQLite writers queue anyway).
                locked = Schedule.objects.select_for_update(skip_locked=True, of=("self",)).select_related("workflow")
                schedule = locked.filter(pk=schedule_id, next_due_at__lte=now).first()
                if schedule is not None:
                    _fire_due(schedule, now, counts)
        except Exception:  # one schedule's trouble must not stop the others; the next tick tries it again
            logger.exception("schedule %s could not fire; the next tick tries again", schedule_id)
            counts["errors"] += 1
    if counts:
        logger.info("schedule tick: %s", dict(counts))
    return dict(counts)


def _fire_due(schedule: Schedule, now: datetime, counts: Counter) -> None:
    nominal = schedule.next_fire_at
    for _ in range(CATCH_UP_LIMIT):
        if nominal is None or schedule.remaining_runs == 0:
            nominal = None
            break
        due = _due(schedule, nominal)
        if due > now:
            break
        if (now - due).total_seconds() > schedule.catchup_window + CATCHUP_GRACE:
            fire = _record(schedule, nominal, Fire.MISSED, now, overlap=schedule.overlap)
        else:
            fire = _fire(schedule, nominal, Overlap(schedule.overlap), now)
        if fire is not None:
            counts[fire.outcome] += 1
        nominal = _next_nominal(schedule, nominal)
    schedule.next_fire_at = nominal
    schedule.next_due_at = _due(schedule, nominal) if nominal is not None else None
    schedule.save(update_fields=["next_fire_at", "next_due_at", "remaining_runs"])


def _next_nominal(schedule: Schedule, nominal: datetime) -> datetime | None:
    if schedule.remaining_runs == 0:
        return None
    return cron.next_after(schedule.cron, schedule.timezone, nominal, end_at=schedule.end_at)


def _record(schedule: Schedule, nominal: datetime, outcome: str, now: datetime, *, overlap: str) -> ScheduleFire | None:
    """Insert the fire row for this nominal time; None when it exists (it fired already: exactly once)."""
    try:
        with transaction.atomic():
            return ScheduleFire.objects.create(
                schedule=schedule, nominal_time=nominal, outcome=outcome, overlap=overlap, fired_at=now
            )
    except IntegrityError:
        return None


def _fire(schedule: Schedule, nominal: datetime, overlap: Overlap, now: datetime) -> ScheduleFire | None:
    """One nominal time under an overlap policy, judged against the schedule's unfinished runs."""
    fire = _record(schedule, nominal, Fire.SKIPPED, now, overlap=overlap)
    if fire is None:
        return None
    unfinished = Run.objects.filter(schedule=schedule, status__in=RUN_UNFINISHED)
    buffered = ScheduleFire.objects.filter(schedule=schedule, outcome=Fire.BUFFERED).exclude(pk=fire.pk)
    if overlap == Overlap.ALLOW_ALL:
        _start(schedule, fire, Fire.STARTED)
    elif overlap == Overlap.CANCEL_OTHER:
        running = list(unfinished.values_list("pk", flat=True))
        for run_id in running:
            run_cancel(run_id=run_id, by=f"schedule:{schedule.name} (cancel_other)")
        _start(schedule, fire, Fire.CANCELLED_OTHER if running else Fire.STARTED)
    elif overlap == Overlap.BUFFER_ONE and buffered.exists():
        pass  # one is waiting already: this one is skipped
    elif overlap in (Overlap.BUFFER_ONE, Overlap.BUFFER_ALL) and (buffered.exists() or unfinished.exists()):
        _take(schedule, fire, Fire.BUFFERED, counted=False)
        if not unfinished.exists():  # buffered fires whose turn came while none could start: go on
            _release_oldest(schedule)
    elif not unfinished.exists():
        _start(schedule, fire, Fire.STARTED)
    return fire


def _take(
    schedule: Schedule, fire: ScheduleFire, outcome: str, run: Run | None = None, message: str = "", *, counted: bool
) -> None:
    """Record the fire's outcome; one that starts or will start a run counts against remaining_runs once."""
    fire.outcome, fire.run, fire.message = outcome, run, message
    fire.save(update_fields=["outcome", "run", "message", "fired_at"])
    if schedule.remaining_runs and not counted and outcome in (Fire.STARTED, Fire.BUFFERED, Fire.CANCELLED_OTHER):
        schedule.remaining_runs -= 1
        Schedule.objects.filter(pk=schedule.pk).update(remaining_runs=F("remaining_runs") - 1)


def _start(schedule: Schedule, fire: ScheduleFire, outcome: str) -> Run | None:
    counted = fire.outcome == Fire.BUFFERED  # a buffered fire counted when it was buffered
    # Claimed before the run starts: a run that ends inside run_start finishes through run_finish,
    # whose release must not find this fire still buffered and start it again.
    _take(schedule, fire, outcome, counted=True)
    try:
        run, _created = run_start(
            workflow=schedule.workflow,
            input=schedule.input,
            started_by=f"schedule:{schedule.name}",
            schedule=schedule,
            nominal_time=fire.nominal_time,
        )
    except (RunNotAllowedError, InputValidationError) as exc:
        logger.warning("schedule %s could not start a run for %s: %s", schedule.pk, fire.nominal_time, exc)
        _take(schedule, fire, Fire.FAILED, message=str(exc), counted=True)
        return None
    _take(schedule, fire, outcome, run, counted=counted)
    return run


_releasing: ContextVar[bool] = ContextVar("chordflow_schedule_releasing", default=False)


def release_buffered(*, run_id: Any, status: str) -> None:
    """A run_finish hook: a scheduled run ended, so the schedule's oldest buffered fire starts now."""
    if _releasing.get():  # a run that ended inside a start of ours: the loop below goes on by itself
        return
    schedule_id = Run.objects.filter(pk=run_id).values_list("schedule_id", flat=True).first()
    if schedule_id is None:
        return
    schedule = (
        Schedule.objects.select_for_update(of=("self",)).select_related("workflow").filter(pk=schedule_id).first()
    )
    if schedule is None or Run.objects.filter(schedule=schedule, status__in=RUN_UNFINISHED).exists():
        return
    _release_oldest(schedule)


def _release_oldest(schedule: Schedule) -> None:
    """Start buffered fires, oldest first, until one starts a run that is still going; a fire that
    cannot start is `failed` and the next one gets its turn."""
    token = _releasing.set(True)
    try:
        waiting = ScheduleFire.objects.filter(schedule=schedule, outcome=Fire.BUFFERED).order_by("nominal_time")
        for fire in waiting[:BACKFILL_LIMIT]:
            fire.fired_at = timezone.now()
            run = _start(schedule, fire, Fire.STARTED)
            if run is not None and run.status in RUN_UNFINISHED:
                return
    finally:
        _releasing.reset(token)


def schedule_trigger(*, schedule: Schedule, overlap: str | None = None, now: datetime | None = None) -> ScheduleFire:
    """Fire now, under the schedule's overlap policy or `overlap`; the nominal time is now."""
    policy = _policy(overlap, schedule.overlap)
    now = now or timezone.now()
    with transaction.atomic(), events.event_batch():
        locked = Schedule.objects.select_for_update(of=("self",)).select_related("workflow").get(pk=schedule.pk)
        fire = _fire(locked, now, policy, now)
    if fire is None:  # the same microsecond twice: the first one stands
        return ScheduleFire.objects.get(schedule=schedule, nominal_time=now)
    return fire


def schedule_backfill(
    *, schedule: Schedule, start: Any, end: Any, overlap: str | None = Overlap.BUFFER_ALL, now: datetime | None = None
) -> int:
    """One fire for each nominal time in [start, end), oldest first; times that fired already are left
    as they are. ScheduleError for a bad range or one of more than BACKFILL_LIMIT times."""
    problems: list[Problem] = []
    start_at, end_at = _when(start, "start", problems), _when(end, "end", problems)
    if start is None or start == "":
        problems.append(Problem("start", "is required"))
    if end is None or end == "":
        problems.append(Problem("end", "is required"))
    if start_at and end_at and end_at <= start_at:
        problems.append(Problem("end", "must be after start"))
    if end_at and end_at > (now or timezone.now()):
        problems.append(Problem("end", "must not be in the future: a backfill fills the past"))
    policy = Overlap.BUFFER_ALL
    try:
        policy = _policy(overlap or Overlap.BUFFER_ALL, Overlap.BUFFER_ALL)
    except ScheduleError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ScheduleError(problems)
    times = []
    for moment in cron.times_after(schedule.cron, schedule.timezone, start_at - timedelta(microseconds=1)):
        if moment >= end_at:
            break
        if len(times) == BACKFILL_LIMIT:
            raise ScheduleError(
                [Problem("end", f"the range holds more than {BACKFILL_LIMIT} fire times: backfill it in parts")]
            )
        times.append(moment)
    now = now or timezone.now()
    fired = 0
    with transaction.atomic(), events.event_batch():
        locked = Schedule.objects.select_for_update(of=("self",)).select_related("workflow").get(pk=schedule.pk)
        for moment in times:
            fired += _fire(locked, moment, policy, now) is not None
    return fired


def _policy(value: str | None, default: str) -> Overlap:
    if value is None:
        return Overlap(default)
    if value not in Overlap.values:
        raise ScheduleError([Problem("overlap", f"must be one of: {', '.join(Overlap.values)}")])
    return Overlap(value)


def next_fire_times(schedule: Schedule, count: int = 5, now: datetime | None = None) -> list[datetime]:
    """The next `count` nominal times from now (within start_at, end_at and remaining_runs)."""
    if schedule.paused or schedule.remaining_runs == 0:
        return []
    after = now or timezone.now()
    if schedule.start_at is not None and schedule.start_at > after:
        after = schedule.start_at - timedelta(microseconds=1)
    limit = count if schedule.remaining_runs is None else min(count, schedule.remaining_runs)
    times = []
    for moment in cron.times_after(schedule.cron, schedule.timezone, after):
        if len(times) >= limit or (schedule.end_at is not None and moment >= schedule.end_at):
            break
        times.append(moment)
    return times


def schedules_load(workflow: Workflow, declared: Any) -> list[str]:
    """A workflow file's `schedules:` list: create or update each by name (idempotent); others stay.

    ScheduleError names each problem as `schedules[i].field`; nothing is saved then (the caller's
    transaction rolls back).
    """
    if not isinstance(declared, list) or not all(isinstance(item, dict) for item in declared):
        raise ScheduleError([Problem("schedules", "must be a list of objects, each with a name and a cron")])
    problems: list[Problem] = []
    lines: list[str] = []
    existing = {s.name: s for s in Schedule.objects.filter(workflow=workflow)}
    for index, values in enumerate(declared):
        name = values.get("name")
        current = existing.get(name) if isinstance(name, str) else None
        try:
            cleaned = clean(workflow, values)
            if current is not None and all(getattr(current, k) == v for k, v in cleaned.items()):
                lines.append(f"schedule {current.name}: unchanged")
                continue
            saved = schedule_save(workflow=workflow, values=values, schedule=current)
        except ScheduleError as exc:
            problems.extend(Problem(f"schedules[{index}].{p.path}".rstrip("."), p.message) for p in exc.problems)
            continue
        lines.append(f"schedule {saved.name}: {'updated' if current else 'created'} ({saved.cron}, {saved.timezone})")
    if problems:
        raise ScheduleError(problems)
    return lines
