"""Schedules fired by real beats and a real worker: on the minute, once, even with two beats."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from executions import schedules
from executions.models import Run
from executions.states import RunStatus
from tests.support.beat import BeatProcess
from tests.support.runs import steps, wait_for_run, wait_until, workflow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def test_two_beats_start_a_minutely_schedule_once_on_the_minute_and_a_paused_one_never():
    wf = workflow(steps({"id": "a", "action": "echo"}))
    every = schedules.schedule_save(workflow=wf, values={"name": "every-minute", "cron": "* * * * *"})
    paused = schedules.schedule_save(workflow=wf, values={"name": "paused", "cron": "* * * * *", "paused": True})
    minute = every.next_fire_at
    beats = [BeatProcess(name="one").start()]
    try:
        # the first beat writes its entries; then a second one runs beside it, as a mistake would
        wait_until(lambda: PeriodicTask.objects.filter(name="chordflow-schedules").exists(), timeout=30)
        beats.append(BeatProcess(name="two").start())
        wait_until(lambda: Run.objects.filter(schedule=every).exists(), timeout=90, what="a scheduled run")
        run = Run.objects.get(schedule=every)
        assert run.nominal_time == minute
        assert run.created_at - minute < timedelta(seconds=5), run.created_at - minute
        assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
        # both beats tick every second for a while after the minute: still one run for it
        wait_until(lambda: timezone.now() > minute + timedelta(seconds=8), timeout=20)
    finally:
        for beat in beats:
            beat.stop()
    assert Run.objects.filter(schedule=every, nominal_time=minute).count() == 1
    assert every.fires.filter(nominal_time=minute).get().outcome == "started"
    assert not Run.objects.filter(schedule=paused).exists() and not paused.fires.exists()
