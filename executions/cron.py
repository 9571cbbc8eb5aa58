"""Cron times for schedules, pure: parse, the nominal times after a moment in a time zone, jitter.

Parsing and iteration are cronsim's; the DST rule is its (Debian cron's): a wall-clock time that
does not exist (spring forward) fires at the next valid time, one that repeats (fall back) fires
once, at its first occurrence. Expressions with `*` in the minute or hour field (`*/15 * * * *`,
`* 2 * * *`) follow real time and fire in both copies of a repeated hour.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cron_descriptor import ExpressionDescriptor, Options
from cronsim import CronSim, CronSimError

ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *"}


class CronError(ValueError):
    """A cron expression or a time zone that cannot be used; the message says why."""


def expand(cron: str) -> str:
    expression = " ".join(str(cron).split())
    return ALIASES.get(expression.lower(), expression)


def zone(name: str) -> ZoneInfo:
    try:
        if len(str(name)) > 64:
            raise ValueError(name)
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder of zones ("America")
        raise CronError(f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Berlin") from None


def check(cron: str) -> str:
    """The expanded expression; CronError when it is not 5 fields cronsim accepts (or an alias)."""
    expression = expand(cron)
    if len(expression) > 100:
        raise CronError("is longer than 100 characters: use ranges and steps (0-30/5) instead of long lists")
    if expression.startswith("@"):
        raise CronError(f"unknown alias {cron!r}: use one of {', '.join(ALIASES)}")
    if len(expression.split()) != 5:
        raise CronError(f"{cron!r} has {len(expression.split())} fields: a cron has 5 (minute hour day month weekday)")
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise CronError(f"{cron!r} is not a valid cron expression: {exc}") from None
    return expression


def times_after(cron: str, tz: str, after: datetime) -> Iterator[datetime]:
    """The nominal times strictly after `after`, in UTC, as the schedule's time zone sees them."""
    local = after.astimezone(zone(tz))
    for moment in CronSim(expand(cron), local):
        yield moment.astimezone(UTC)


def next_after(cron: str, tz: str, after: datetime, *, end_at: datetime | None = None) -> datetime | None:
    """The first nominal time after `after`, or None when there is none before `end_at`."""
    for moment in times_after(cron, tz, after):
        return None if end_at is not None and moment >= end_at else moment
    return None


def jitter_offset(schedule_id: int, nominal: datetime, jitter: int) -> timedelta:
    """A delay in [0, jitter) seconds, the same for this schedule and nominal time in every process."""
    if jitter <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"{schedule_id}:{nominal.astimezone(UTC).isoformat()}".encode()).digest()
    return timedelta(milliseconds=int.from_bytes(digest[:8], "big") % (jitter * 1000))


def describe(cron: str) -> str:
    """In words: "At 02:30, Monday through Friday"."""
    options = Options()
    options.use_24hour_time_format = True
    try:
        return ExpressionDescriptor(expand(cron), options).get_description()
    except Exception:  # a description is a courtesy; the expression was validated on save
        return expand(cron)
