"""The schedules admin: the list reads in words, the form validates as the API does, actions work."""

import pytest
from django.urls import reverse

from executions import schedules
from executions.models import Run, Schedule
from tests.support.runs import steps, workflow

pytestmark = pytest.mark.django_db
NOWHERE = {"queue": "nobody-reads-this"}


@pytest.fixture
def wf():
    return workflow(steps({"id": "a", "action": "echo"}, defaults=NOWHERE), slug="sched")


def form(wf, **values) -> dict:
    return {
        "workflow": wf.pk, "name": "mornings", "cron": "30 2 * * 1-5", "timezone": "Europe/Berlin", "input": "{}",
        "overlap": "skip", "catchup_window": 3600, "note": "", "jitter": 0,
        "fires-TOTAL_FORMS": 0, "fires-INITIAL_FORMS": 0, **values,
    }  # fmt: skip


def test_add_validates_like_the_api_and_the_pages_show_the_schedule(admin_client, wf):
    add = reverse("admin:executions_schedule_add")
    bad = admin_client.post(add, form(wf, cron="61 * * * *", timezone="Mars/Olympus"))
    assert bad.status_code == 200 and "not a valid cron" in bad.content.decode()
    assert "unknown time zone" in bad.content.decode() and not Schedule.objects.exists()
    assert admin_client.post(add, form(wf)).status_code == 302
    schedule = Schedule.objects.get()
    assert schedule.next_fire_at is not None and schedule.next_due_at is not None
    listing = admin_client.get(reverse("admin:executions_schedule_changelist")).content.decode()
    assert "At 02:30, Monday through Friday" in listing
    assert admin_client.get(reverse("admin:executions_schedule_change", args=[schedule.pk])).status_code == 200
    assert "mornings" in admin_client.get(reverse("admin:workflows_workflow_change", args=[wf.pk])).content.decode()


def test_actions_pause_resume_and_trigger(admin_client, wf):
    schedule = schedules.schedule_save(workflow=wf, values={"name": "n", "cron": "@daily"})
    url = reverse("admin:executions_schedule_changelist")
    admin_client.post(url, {"action": "pause", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert schedule.paused and schedule.next_due_at is None
    admin_client.post(url, {"action": "resume", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert not schedule.paused and schedule.next_due_at is not None
    admin_client.post(url, {"action": "trigger_now", "_selected_action": [schedule.pk]})
    assert Run.objects.filter(schedule=schedule).count() == 1


def listing_queries(admin_client, wf, count: int) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(count):
        schedule = schedules.schedule_save(
            workflow=wf, values={"name": f"n{Schedule.objects.count()}", "cron": "@daily"}
        )
        schedules.schedule_trigger(schedule=schedule)
    with CaptureQueriesContext(connection) as captured:
        assert admin_client.get(reverse("admin:executions_schedule_changelist")).status_code == 200
    return len(captured)


def test_the_list_does_not_query_per_schedule(admin_client, wf):
    assert listing_queries(admin_client, wf, 2) == listing_queries(admin_client, wf, 4)
