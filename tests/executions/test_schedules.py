"""Schedules without beat: the tick is called with the clock passed in; steps go to a queue no worker reads."""

from datetime import UTC, datetime, timedelta

import pytest

from executions import schedules
from executions.exceptions import ScheduleError
from executions.models import Run, Schedule, ScheduleFire
from executions.services import run_cancel
from executions.states import RunStatus
from tests.support.runs import step_row, steps, workflow
from tests.support.services import NOWHERE, play, purge_nowhere

pytestmark = pytest.mark.django_db(transaction=True)
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday


@pytest.fixture(autouse=True)
def empty_queue():
    purge_nowhere()


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def make(*, cron="* * * * *", now=T0 - timedelta(seconds=30), wf=None, **values) -> Schedule:
    wf = wf or workflow(steps({"id": "a", "action": "echo"}, defaults={"queue": NOWHERE}))
    return schedules.schedule_save(workflow=wf, values={"name": "every", "cron": cron, **values}, now=now)


def outcomes(schedule) -> list[tuple[datetime, str]]:
    return list(
        ScheduleFire.objects.filter(schedule=schedule).order_by("nominal_time").values_list("nominal_time", "outcome")
    )


def finish(run: Run) -> None:
    play(step_row(run, "a"))


def test_a_due_schedule_fires_once_per_nominal_time_and_records_it_on_the_run():
    schedule = make()
    assert schedule.next_fire_at == T0
    assert schedules.schedule_tick(now=T0 - timedelta(seconds=1)) == {}  # not due yet
    assert schedules.schedule_tick(now=T0 + timedelta(seconds=1)) == {"started": 1}
    assert schedules.schedule_tick(now=T0 + timedelta(seconds=2)) == {}  # the same tick again: nothing
    run = Run.objects.get(schedule=schedule)
    assert run.nominal_time == T0 and run.started_by == "schedule:every"
    schedule.refresh_from_db()
    assert schedule.next_fire_at == T0 + minutes(1)


def test_the_same_nominal_time_never_fires_twice_even_when_the_pointer_is_stale():
    schedule = make()
    schedules.schedule_tick(now=T0 + timedelta(seconds=1))
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=T0, next_due_at=T0)  # a second beat's stale view
    assert schedules.schedule_tick(now=T0 + timedelta(seconds=2)) == {}
    assert Run.objects.filter(schedule=schedule).count() == 1


def test_skip_starts_nothing_while_a_run_is_unfinished():
    schedule = make()
    schedules.schedule_tick(now=T0)
    assert schedules.schedule_tick(now=T0 + minutes(1)) == {"skipped": 1}
    finish(Run.objects.get(schedule=schedule))
    assert schedules.schedule_tick(now=T0 + minutes(2)) == {"started": 1}


def test_buffer_one_keeps_one_waiting_and_starts_it_when_the_run_finishes():
    schedule = make(overlap="buffer_one")
    schedules.schedule_tick(now=T0)
    schedules.schedule_tick(now=T0 + minutes(1))
    schedules.schedule_tick(now=T0 + minutes(2))
    assert [o for _, o in outcomes(schedule)] == ["started", "buffered", "skipped"]
    first = Run.objects.get(schedule=schedule)
    finish(first)  # run_finish releases the buffered fire
    second = Run.objects.exclude(pk=first.pk).get(schedule=schedule)
    assert second.nominal_time == T0 + minutes(1)
    assert [o for _, o in outcomes(schedule)] == ["started", "started", "skipped"]


def test_buffer_all_runs_every_fire_one_after_another_in_order():
    schedule = make(overlap="buffer_all")
    for n in range(3):
        schedules.schedule_tick(now=T0 + minutes(n))
    assert [o for _, o in outcomes(schedule)] == ["started", "buffered", "buffered"]
    for expected in (T0 + minutes(1), T0 + minutes(2)):
        running = Run.objects.get(schedule=schedule, status=RunStatus.RUNNING)
        finish(running)
        assert Run.objects.get(schedule=schedule, status=RunStatus.RUNNING).nominal_time == expected
    assert Run.objects.filter(schedule=schedule).count() == 3


def test_cancel_other_cancels_the_running_run_then_starts():
    schedule = make(overlap="cancel_other")
    schedules.schedule_tick(now=T0)
    schedules.schedule_tick(now=T0 + minutes(1))
    first, second = Run.objects.filter(schedule=schedule).order_by("nominal_time")
    assert (first.status, second.status) == (RunStatus.CANCELLED, RunStatus.RUNNING)
    assert [o for _, o in outcomes(schedule)] == ["started", "cancelled_other"]


def test_allow_all_starts_regardless():
    schedule = make(overlap="allow_all")
    schedules.schedule_tick(now=T0)
    schedules.schedule_tick(now=T0 + minutes(1))
    assert Run.objects.filter(schedule=schedule, status=RunStatus.RUNNING).count() == 2


def test_catch_up_starts_what_is_inside_the_window_oldest_first_and_records_older_times_as_missed():
    schedule = make(overlap="buffer_all", catchup_window=150)
    # beat was down from T0 to T0 + 5 min: T0 .. T0+5 are due; T0 .. T0+2 are older than 150 s
    counts = schedules.schedule_tick(now=T0 + minutes(5))
    assert counts == {"missed": 3, "started": 1, "buffered": 2}
    assert outcomes(schedule) == [
        (T0, "missed"), (T0 + minutes(1), "missed"), (T0 + minutes(2), "missed"),
        (T0 + minutes(3), "started"), (T0 + minutes(4), "buffered"), (T0 + minutes(5), "buffered"),
    ]  # fmt: skip


def test_remaining_runs_start_and_end_bound_the_fires():
    schedule = make(remaining_runs=2, overlap="allow_all")
    for n in range(4):
        schedules.schedule_tick(now=T0 + minutes(n))
    schedule.refresh_from_db()
    assert Run.objects.filter(schedule=schedule).count() == 2
    assert (schedule.remaining_runs, schedule.next_due_at) == (0, None)

    bounded = make(wf=schedule.workflow, name="bounded", start_at=T0 + minutes(2), end_at=T0 + minutes(4))
    assert bounded.next_fire_at == T0 + minutes(2)
    assert schedules.next_fire_times(bounded, now=T0) == [T0 + minutes(2), T0 + minutes(3)]
    for n in range(6):
        schedules.schedule_tick(now=T0 + minutes(n))
    assert [t for t, _ in outcomes(bounded)] == [T0 + minutes(2), T0 + minutes(3)]


def test_jitter_delays_a_fire_within_its_bound():
    schedule = make(jitter=40)
    schedule.refresh_from_db()
    delay = schedule.next_due_at - schedule.next_fire_at
    assert timedelta(0) <= delay < timedelta(seconds=40)
    assert schedules.schedule_tick(now=schedule.next_due_at - timedelta(milliseconds=1)) == {}
    assert schedules.schedule_tick(now=schedule.next_due_at) == {"started": 1}


def test_a_paused_schedule_fires_nothing_and_resumes_from_now():
    schedule = make()
    schedules.schedule_pause(schedule=schedule, note="maintenance")
    assert schedules.schedule_tick(now=T0 + minutes(10)) == {}
    schedules.schedule_resume(
        schedule=schedule,
        now=T0
        + minutes(
            10,
        )
        + timedelta(seconds=1),
    )
    assert schedule.next_fire_at == T0 + minutes(11)
    assert schedules.schedule_tick(now=T0 + minutes(11)) == {"started": 1}
    assert not ScheduleFire.objects.filter(schedule=schedule, outcome="missed").exists()  # paused, not missed


def test_trigger_fires_now_under_the_policy_or_its_override():
    schedule = make()
    fire = schedules.schedule_trigger(schedule=schedule, now=T0)
    assert (fire.outcome, fire.nominal_time) == ("started", T0)
    assert schedules.schedule_trigger(schedule=schedule, now=T0 + minutes(1)).outcome == "skipped"
    assert schedules.schedule_trigger(schedule=schedule, overlap="allow_all", now=T0 + minutes(2)).outcome == "started"


def test_backfill_fires_each_time_in_the_range_once_and_refuses_a_huge_range():
    schedule = make(cron="0 * * * *")
    start, end = T0 - timedelta(hours=5), T0 - timedelta(hours=2)
    assert schedules.schedule_backfill(schedule=schedule, start=start.isoformat(), end=end.isoformat(), now=T0) == 3
    assert [o for _, o in outcomes(schedule)] == ["started", "buffered", "buffered"]
    assert schedules.schedule_backfill(schedule=schedule, start=start, end=end, now=T0) == 0  # fired already
    with pytest.raises(ScheduleError, match="more than 1000 fire times"):
        schedules.schedule_backfill(schedule=schedule, start=T0 - timedelta(days=60), end=T0)
    with pytest.raises(ScheduleError, match="end: must be after start"):
        schedules.schedule_backfill(schedule=schedule, start=T0, end=T0)


def test_bad_fields_are_refused_naming_each_one():
    wf = workflow(
        steps(
            {"id": "a", "action": "echo"},
            input_schema={"type": "object", "required": ["day"], "properties": {"day": {"type": "string"}}},
        )
    )
    with pytest.raises(ScheduleError) as caught:
        schedules.schedule_save(
            workflow=wf,
            values={
                "name": "x", "cron": "61 * * * *", "timezone": "Mars/Olympus", "input": {}, "overlap": "sometimes",
                "start_at": "2026-12-02T00:00:00Z", "end_at": "2026-12-01T00:00:00Z", "jitter": -1, "colour": 1,
            },
        )  # fmt: skip
    found = {p.path: p.message for p in caught.value.problems}
    assert "not a valid cron" in found["cron"] and "unknown time zone" in found["timezone"]
    assert found["overlap"].startswith("must be one of") and found["end_at"] == "must be after start_at"
    assert found["jitter"].startswith("must be a whole number") and found["colour"].startswith("unknown field")
    assert found["input"] == "'day' is a required property"


def test_a_scheduled_run_that_fails_to_start_is_recorded_not_dropped():
    schedule = make()
    schedule.workflow.active = False
    schedule.workflow.save()
    assert schedules.schedule_tick(now=T0) == {"failed": 1}
    fire = ScheduleFire.objects.get(schedule=schedule)
    assert "inactive" in fire.message and fire.run is None


def test_a_run_cancelled_by_hand_releases_the_buffer_too():
    schedule = make(overlap="buffer_one")
    schedules.schedule_tick(now=T0)
    schedules.schedule_tick(now=T0 + minutes(1))
    run_cancel(run_id=Run.objects.get(schedule=schedule).pk)
    assert Run.objects.filter(schedule=schedule, status=RunStatus.RUNNING).count() == 1


def test_a_workflow_file_declares_schedules_and_loading_it_again_changes_nothing(tmp_path, capsys):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    call_command("load_workflows", "workflows/examples/nightly_etl.yaml")
    nightly = Schedule.objects.get(workflow__slug="nightly-etl", name="nightly")
    assert (nightly.cron, nightly.timezone, nightly.paused, nightly.next_due_at) == (
        "30 2 * * *", "Europe/Berlin", True, None,
    )  # fmt: skip
    call_command("load_workflows", "workflows/examples/nightly_etl.yaml")
    assert "schedule nightly: unchanged" in capsys.readouterr().out
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "name: B\nsteps: [{id: a, action: echo}]\nschedules:\n  - {name: x, cron: '99 * * * *'}\n  - {cron: '@daily'}\n"
    )
    with pytest.raises(CommandError):
        call_command("load_workflows", str(broken))
    err = capsys.readouterr().err
    assert "schedules[0].cron" in err and "schedules[1].name" in err
    assert not Schedule.objects.filter(workflow__slug="broken").exists()
    from workflows.models import Workflow

    assert not Workflow.objects.filter(slug="broken").exists()  # nothing stored: one transaction


def test_a_buffered_fire_that_cannot_start_gives_the_next_one_its_turn():
    schedule = make(overlap="buffer_all")
    for n in range(3):
        schedules.schedule_tick(now=T0 + minutes(n))
    schedule.workflow.active = False
    schedule.workflow.save()
    finish(Run.objects.get(schedule=schedule))  # the first buffered fire cannot start: the workflow is inactive
    assert [o for _, o in outcomes(schedule)] == ["started", "failed", "failed"]
    schedule.workflow.active = True
    schedule.workflow.save()
    schedules.schedule_tick(now=T0 + minutes(3))  # nothing is running: it starts, nothing stays stuck
    assert [o for _, o in outcomes(schedule)][-1] == "started"


def test_buffered_fires_whose_runs_end_at_once_each_start_once():
    """Runs that end inside their own start (every step skipped) finish through run_finish, whose
    release must not start the same buffered fire again (it recursed until RecursionError)."""
    wf = workflow(steps({"id": "a", "action": "echo", "when": "{{ not input.skip }}"}, defaults={"queue": NOWHERE}))
    schedule = make(wf=wf, overlap="buffer_all", input={"skip": False})
    for n in range(4):
        schedules.schedule_tick(now=T0 + minutes(n))
    schedules.schedule_save(workflow=wf, values={"input": {"skip": True}}, schedule=schedule)
    finish(Run.objects.get(schedule=schedule))
    assert [o for _, o in outcomes(schedule)] == ["started"] * 4
    assert Run.objects.filter(schedule=schedule).count() == 4
    assert set(Run.objects.filter(schedule=schedule).values_list("status", flat=True)) == {RunStatus.SUCCEEDED}


def test_a_tick_a_little_late_still_fires_a_schedule_with_no_catch_up():
    schedule = make(catchup_window=0)
    assert schedules.schedule_tick(now=T0 + timedelta(seconds=3)) == {"started": 1}
    assert schedules.schedule_tick(now=T0 + minutes(1) + timedelta(seconds=30)) == {"missed": 1}
    assert schedule.fires.count() == 2


def test_remaining_runs_used_up_by_a_trigger_leave_nothing_for_the_tick():
    schedule = make(remaining_runs=1, overlap="allow_all")
    schedules.schedule_trigger(schedule=schedule, now=T0 - timedelta(seconds=10))
    assert schedules.schedule_tick(now=T0 + timedelta(seconds=1)) == {}
    schedule.refresh_from_db()
    assert (schedule.remaining_runs, schedule.next_due_at) == (0, None)
    assert Run.objects.filter(schedule=schedule).count() == 1


def test_a_change_of_note_or_input_keeps_the_pending_fire_a_change_of_timing_does_not():
    schedule = make()
    assert schedule.next_fire_at == T0
    kept = schedules.schedule_save(
        workflow=schedule.workflow, values={"note": "x"}, schedule=schedule, now=T0 + minutes(2)
    )
    assert kept.next_fire_at == T0  # still fires (then catches up) on the next tick
    moved = schedules.schedule_save(workflow=schedule.workflow, values={"cron": "*/5 * * * *"}, schedule=kept, now=T0)
    assert moved.next_fire_at == T0 + minutes(5)


def test_inputs_that_used_to_raise_are_problems_with_their_field():
    wf = workflow(steps({"id": "a", "action": "echo"}))
    values = {
        "name": "x", "cron": ",".join(str(m) for m in range(60)) + " * * * *", "timezone": "America",
        "start_at": "2026-02-30T00:00:00Z", "end_at": "9999-01-01T00:00:00Z", "jitter": 10**12,
        "catchup_window": 2**40, "remaining_runs": 2**40,
    }  # fmt: skip
    with pytest.raises(ScheduleError) as caught:
        schedules.schedule_save(workflow=wf, values=values)
    assert {p.path for p in caught.value.problems} == {
        "cron", "timezone", "start_at", "end_at", "jitter", "catchup_window", "remaining_runs",
    }  # fmt: skip
    assert schedules.schedule_save(workflow=wf, values={"name": "y", "cron": "@daily", "input": None}).input == {}
    with pytest.raises(ScheduleError, match="must not be in the future"):
        schedules.schedule_backfill(schedule=Schedule.objects.get(name="y"), start=T0, end=T0 + minutes(5), now=T0)
