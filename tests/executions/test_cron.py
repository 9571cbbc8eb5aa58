"""Cron times for schedules, without a database: aliases, errors, time zones, the DST rule, jitter."""

from datetime import UTC, datetime, timedelta

import pytest

from executions import cron


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_aliases_and_five_fields():
    assert cron.check("@daily") == "0 0 * * *" and cron.check(" 30  2 * * 1-5 ") == "30 2 * * 1-5"
    assert cron.next_after("@hourly", "UTC", utc(2026, 1, 1, 10, 5)) == utc(2026, 1, 1, 11, 0)
    assert cron.next_after("@monthly", "UTC", utc(2026, 1, 15)) == utc(2026, 2, 1)


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("* * * *", "has 4 fields"),
        ("61 * * * *", "not a valid cron"),
        ("@reboot", "unknown alias"),
        ("", "has 0 fields"),
    ],
)
def test_a_bad_expression_says_what_is_wrong(expression, says):
    with pytest.raises(cron.CronError, match=says):
        cron.check(expression)


def test_an_unknown_time_zone_is_refused():
    with pytest.raises(cron.CronError, match="unknown time zone 'Mars/Olympus'"):
        cron.zone("Mars/Olympus")


def test_times_follow_the_schedules_time_zone():
    # 09:00 in New York is 14:00 UTC in winter, 13:00 in summer
    assert cron.next_after("0 9 * * *", "America/New_York", utc(2026, 1, 10)) == utc(2026, 1, 10, 14)
    assert cron.next_after("0 9 * * *", "America/New_York", utc(2026, 7, 10)) == utc(2026, 7, 10, 13)


def test_a_time_that_does_not_exist_fires_at_the_next_valid_time():
    # Berlin springs forward on 2026-03-29 at 02:00 to 03:00: 02:30 does not exist that day
    times = cron.times_after("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12))
    assert [next(times) for _ in range(2)] == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]  # 03:00 CEST


def test_a_repeated_time_fires_once():
    # Berlin falls back on 2026-10-25 at 03:00 to 02:00: 02:30 happens twice, it fires at the first
    times = cron.times_after("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12))
    assert [next(times) for _ in range(2)] == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_jitter_is_below_the_bound_and_the_same_in_every_process():
    nominal = utc(2026, 1, 1, 9)
    offsets = {cron.jitter_offset(schedule, nominal, 30) for schedule in range(200)}
    assert all(timedelta(0) <= offset < timedelta(seconds=30) for offset in offsets)
    assert len(offsets) > 150  # spread, not one value
    assert cron.jitter_offset(7, nominal, 30) == cron.jitter_offset(7, nominal, 30)
    assert cron.jitter_offset(7, nominal, 0) == timedelta(0)


def test_a_description_in_words():
    assert cron.describe("30 2 * * 1-5") == "At 02:30, Monday through Friday"
