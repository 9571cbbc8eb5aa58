"""The schedules REST API: create, read, change, pause, resume, trigger, backfill, fires, errors."""

from datetime import UTC, datetime, timedelta

import pytest

from executions.models import Run, Schedule
from tests.support.api import token_client, user_with
from tests.support.runs import steps, workflow
from tests.support.services import NOWHERE, purge_nowhere

pytestmark = pytest.mark.django_db(transaction=True)
PERMS = [
    f"executions.{codename}"
    for codename in ("view_schedule", "add_schedule", "change_schedule", "delete_schedule", "trigger_schedule")
]


@pytest.fixture(autouse=True)
def empty_queue():
    purge_nowhere()


@pytest.fixture
def api():
    return token_client(user_with(*PERMS, "executions.view_run"))


@pytest.fixture
def nightly():
    return workflow(
        steps(
            {"id": "a", "action": "echo"},
            defaults={"queue": NOWHERE},
            input_schema={"type": "object", "properties": {"day": {"type": "string"}}},
        ),
        slug="nightly",
    )


def test_create_read_and_list_a_schedule(api, nightly):
    body = {"workflow": "nightly", "name": "weekday-mornings", "cron": "30 2 * * 1-5", "timezone": "Europe/Berlin"}
    created = api.post("/api/schedules/", body, format="json")
    assert created.status_code == 201, created.json()
    schedule = created.json()
    assert schedule["description"] == "At 02:30, Monday through Friday"
    assert len(schedule["next_fire_times"]) == 5
    first = datetime.fromisoformat(schedule["next_fire_times"][0])
    assert (first.hour, first.minute) == (2, 30) and first.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    assert schedule["overlap"] == "skip" and schedule["catchup_window"] == 3600 and schedule["last_fire"] is None
    assert api.get(f"/api/schedules/{schedule['id']}/").json()["name"] == "weekday-mornings"
    assert [s["id"] for s in api.get("/api/schedules/?workflow=nightly").json()["results"]] == [schedule["id"]]
    assert api.get("/api/schedules/?workflow=other").json()["results"] == []


def test_bad_fields_get_a_400_naming_each(api, nightly):
    body = {
        "workflow": "nightly", "name": "x", "cron": "every day", "timezone": "Nowhere/City", "input": {"day": 3},
        "start_at": "2026-12-02T00:00:00Z", "end_at": "2026-12-01T00:00:00Z",
    }  # fmt: skip
    response = api.post("/api/schedules/", body, format="json")
    assert response.status_code == 400
    paths = {p["path"] for p in response.json()["problems"]}
    assert {"cron", "timezone", "input.day", "end_at"} <= paths
    assert api.post("/api/schedules/", {"name": "x", "cron": "* * * * *"}, format="json").status_code == 400
    missing = api.post("/api/schedules/", {"workflow": "nope", "name": "x", "cron": "@daily"}, format="json")
    assert missing.status_code == 404
    assert api.get("/api/schedules/99999999999999999999999/").status_code == 404


def test_patch_pause_resume_and_delete(api, nightly):
    schedule = api.post("/api/schedules/", {"workflow": "nightly", "name": "n", "cron": "@daily"}, format="json").json()
    url = f"/api/schedules/{schedule['id']}/"
    changed = api.patch(url, {"cron": "0 6 * * *", "overlap": "buffer_all"}, format="json").json()
    assert (changed["cron"], changed["overlap"], changed["name"]) == ("0 6 * * *", "buffer_all", "n")
    paused = api.post(url + "pause/", {"note": "holiday"}, format="json").json()
    assert paused["paused"] is True and paused["note"] == "holiday" and paused["next_fire_times"] == []
    assert api.post(url + "resume/").json()["paused"] is False
    assert api.delete(url).status_code == 204 and not Schedule.objects.exists()


def test_trigger_backfill_and_fires(api, nightly):
    schedule = api.post("/api/schedules/", {"workflow": "nightly", "name": "h", "cron": "0 * * * *"}, format="json")
    url = f"/api/schedules/{schedule.json()['id']}/"
    fire = api.post(url + "trigger/", {}, format="json")
    assert fire.status_code == 201 and fire.json()["outcome"] == "started"
    run = api.get(f"/api/runs/{fire.json()['run']}/").json()
    assert run["schedule"] == schedule.json()["id"] and run["nominal_time"] == fire.json()["nominal_time"]
    assert api.post(url + "trigger/", {}, format="json").json()["outcome"] == "skipped"
    end = datetime(2026, 11, 1, 6, tzinfo=UTC)
    start = (end - timedelta(hours=3)).isoformat()
    backfill = api.post(url + "backfill/", {"start": start, "end": end.isoformat()}, format="json")
    assert backfill.status_code == 202 and backfill.json() == {"count": 3}
    huge = api.post(url + "backfill/", {"start": "2026-01-01T00:00:00Z", "end": end.isoformat()}, format="json")
    assert huge.status_code == 400 and "more than 1000" in huge.json()["problems"][0]["message"]
    fires = api.get(url + "fires/").json()["results"]
    assert [f["outcome"] for f in fires][:2] == ["skipped", "started"]  # newest first
    assert len(fires) == 5 and Run.objects.filter(schedule_id=schedule.json()["id"]).count() == 1
    assert api.get(url).json()["last_fire"]["outcome"] == "skipped"


def test_permissions(nightly):
    reader = token_client(user_with("executions.view_schedule"))
    assert reader.get("/api/schedules/").status_code == 200
    denied = reader.post("/api/schedules/", {"workflow": "nightly", "name": "n", "cron": "@daily"}, format="json")
    assert denied.status_code == 403 and "executions.add_schedule" in denied.json()["detail"]


def test_the_list_does_not_query_per_schedule(api, nightly):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries() -> int:
        body = {"workflow": "nightly", "name": f"n{Schedule.objects.count()}", "cron": "@daily"}
        created = api.post("/api/schedules/", body, format="json").json()
        api.post(f"/api/schedules/{created['id']}/trigger/", {}, format="json")
        with CaptureQueriesContext(connection) as captured:
            listed = api.get("/api/schedules/").json()["results"]
        assert all(s["last_fire"]["outcome"] == "started" for s in listed)
        return len(captured)

    assert queries() == queries() == queries()
