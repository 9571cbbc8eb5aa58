"""REST: runs — start (idempotent), list with filters, read with steps, branches, events, cancel, retry."""

import base64
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions.models import Run
from executions.services import run_start
from executions.states import RunStatus
from tests.support.api import token_client, user_with
from tests.support.runs import steps, wait_for_run, workflow

OPERATOR = ("executions.view_run", "executions.add_run", "executions.cancel_run", "executions.retry_run")
NOWHERE = {"queue": "nobody-reads-this"}


@pytest.fixture
def operator():
    return token_client(user_with(*OPERATOR))


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_run_started_over_rest_finishes_on_the_worker_and_reads_back_with_its_steps(operator):
    workflow(
        steps(
            {"id": "fan", "action": "echo", "for_each": "{{ input.xs }}", "params": {"x": "{{ item }}"}},
            {"id": "sum", "action": "echo", "depends_on": ["fan"], "params": {"n": "{{ steps.fan.output | length }}"}},
            input_schema={"type": "object", "required": ["xs"]},
        ),
        slug="api-e2e",
    )
    started = operator.post("/api/workflows/api-e2e/runs/", {"input": {"xs": [1, 2, 3]}}, format="json")
    assert started.status_code == 201, started.json()
    run_id = started.json()["id"]
    wait_for_run(run_id)
    body = operator.get(f"/api/runs/{run_id}/").json()
    assert body["status"] == "succeeded" and body["workflow"] == "api-e2e" and body["version"] == 1
    fan, total = body["steps"]
    assert (fan["id"], fan["status"], fan["attempts"]) == ("fan", "succeeded", 0)
    assert fan["branches"] == {"count": 3, "by_status": {"succeeded": 3}}
    assert total["output"] == {"n": 3} and total["attempts"] == 1 and total["error"] is None
    assert total["queued_at"] <= total["started_at"] <= total["finished_at"]
    branches = operator.get(f"/api/runs/{run_id}/steps/fan/branches/?page_size=2").json()
    assert [b["index"] for b in branches["results"]] == [0, 1] and branches["next"]
    assert operator.get(branches["next"]).json()["results"][0]["output"] == {"x": 3}
    events = operator.get(f"/api/runs/{run_id}/events/").json()["results"]
    assert events[0]["type"] == "run.started" and events[-1]["type"] == "run.succeeded"


@pytest.mark.django_db
def test_start_is_idempotent_per_key_and_validates_input(operator):
    workflow(
        steps({"id": "a", "action": "echo"}, defaults=NOWHERE, input_schema={"type": "object", "required": ["n"]}),
        slug="s",
    )
    first = operator.post("/api/workflows/s/runs/", {"input": {"n": 1}, "idempotency_key": "k1"}, format="json")
    again = operator.post("/api/workflows/s/runs/", {"input": {"n": 1}, "idempotency_key": "k1"}, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    refused = operator.post("/api/workflows/s/runs/", {"input": {}}, format="json")
    assert refused.status_code == 400
    assert refused.json()["problems"] == [{"path": "input", "message": "'n' is a required property"}]
    unknown = operator.post("/api/workflows/s/runs/", {"inputs": {}}, format="json")
    assert unknown.status_code == 400 and unknown.json()["problems"][0]["path"] == "inputs"
    assert operator.post("/api/workflows/ghost/runs/", {}, format="json").status_code == 404
    assert Run.objects.count() == 1


@pytest.mark.django_db
def test_list_filters_paginates_newest_first_without_n_plus_one(operator):
    a = workflow(steps({"id": "a", "action": "echo"}, defaults=NOWHERE), slug="wa")
    b = workflow(steps({"id": "a", "action": "echo"}, defaults=NOWHERE), slug="wb")
    runs = [run_start(workflow=a)[0] for _ in range(3)] + [run_start(workflow=b)[0] for _ in range(2)]
    listed = operator.get("/api/runs/?page_size=4").json()
    assert [r["id"] for r in listed["results"]] == [str(r.pk) for r in reversed(runs)][:4]
    assert len(operator.get(listed["next"]).json()["results"]) == 1
    assert {r["workflow"] for r in operator.get("/api/runs/?workflow=wb").json()["results"]} == {"wb"}
    assert operator.get("/api/runs/?status=failed").json()["results"] == []
    assert len(operator.get("/api/runs/?status=running&created_after=2000-01-01T00:00:00Z").json()["results"]) == 5
    assert operator.get("/api/runs/?created_before=2000-01-01T00:00:00Z").json()["results"] == []
    bad = operator.get("/api/runs/?status=exploded&created_after=yesterday")
    assert bad.status_code == 400
    assert {p["path"] for p in bad.json()["problems"]} == {"status", "created_after"}
    with CaptureQueriesContext(connection) as few:
        operator.get("/api/runs/?page_size=2")
    with CaptureQueriesContext(connection) as many:
        operator.get("/api/runs/?page_size=5")
    assert len(few) == len(many)


@pytest.mark.django_db
def test_cancel_and_retry_are_202_or_409_saying_why(operator):
    wf = workflow(steps({"id": "a", "action": "echo"}, defaults=NOWHERE), slug="c")
    run, _ = run_start(workflow=wf)
    cancelled = operator.post(f"/api/runs/{run.pk}/cancel/")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    again = operator.post(f"/api/runs/{run.pk}/cancel/")
    assert again.status_code == 409
    assert again.json()["detail"] == "the run is cancelled: only pending, running or waiting runs can be cancelled"
    retried = operator.post(f"/api/runs/{run.pk}/retry/")
    assert retried.status_code == 202 and retried.json()["status"] == RunStatus.RUNNING
    assert operator.post(f"/api/runs/{run.pk}/retry/").status_code == 409


@pytest.mark.django_db
def test_missing_or_malformed_ids_and_permissions(operator, client):
    wf = workflow(steps({"id": "a", "action": "echo"}, defaults=NOWHERE), slug="p")
    run, _ = run_start(workflow=wf)
    assert operator.get("/api/runs/not-a-uuid/").json()["detail"] == "no run with id 'not-a-uuid' (not a UUID)"
    assert operator.get(f"/api/runs/{uuid.uuid4()}/events/").status_code == 404
    assert operator.get(f"/api/runs/{run.pk}/steps/ghost/branches/").status_code == 404
    assert operator.get("/api/no/such/endpoint/").json()["detail"].startswith("no such endpoint")
    viewer = token_client(user_with("executions.view_run"))
    assert viewer.get(f"/api/runs/{run.pk}/").status_code == 200
    assert viewer.post(f"/api/runs/{run.pk}/cancel/").status_code == 403
    assert viewer.post("/api/workflows/p/runs/", {}, format="json").status_code == 403
    assert client.get(f"/api/runs/{run.pk}/").status_code == 401


@pytest.mark.django_db
def test_a_replayed_key_shows_the_run_only_to_those_who_may_view_runs(operator):
    workflow(steps({"id": "a", "action": "echo"}, defaults=NOWHERE), slug="secret")
    first = operator.post(
        "/api/workflows/secret/runs/", {"input": {"card": "4111"}, "idempotency_key": "k"}, format="json"
    )
    starter = token_client(user_with("executions.add_run"))
    assert starter.get("/api/runs/").status_code == 403
    replay = starter.post("/api/workflows/secret/runs/", {"input": {}, "idempotency_key": "k"}, format="json")
    assert replay.status_code == 409
    run_id = first.json()["id"]
    assert replay.json() == {
        "detail": f"this idempotency key was used before, for run {run_id} (running); "
        "reading that run needs the permission executions.view_run",
        "id": run_id,
        "status": "running",
    }
    again = operator.post("/api/workflows/secret/runs/", {"input": {}, "idempotency_key": "k"}, format="json")
    assert again.status_code == 200 and again.json()["input"] == {"card": "4111"}
    assert Run.objects.count() == 1


@pytest.mark.django_db
def test_list_queries_that_a_client_may_send_are_read_as_the_schema_says(operator):
    wf = workflow(steps({"id": "a", "action": "echo"}, defaults=NOWHERE), slug="q")
    run, _ = run_start(workflow=wf)
    everything = [str(run.pk)]
    for query in ("status=", "workflow=", "created_after=", "page_size=", "cursor=", "status=&workflow=&page_size="):
        response = operator.get(f"/api/runs/?{query}")
        assert response.status_code == 200, (query, response.json())
        assert [r["id"] for r in response.json()["results"]] == everything, query
    for instant in (
        "2000-01-01T00:00:00-13:19",
        "2000-01-01t00:00:00z",
        "1998-12-31T23:59:60Z",
        "0001-01-01T00:00:00+13:19",
    ):
        response = operator.get("/api/runs/", {"created_after": instant})
        assert response.status_code == 200, (instant, response.json())
        assert [r["id"] for r in response.json()["results"]] == everything, instant
    assert (
        operator.get("/api/runs/", {"created_before": "9999-12-31T23:59:59-13:19"}).json()["results"][0]["id"]
        == everything[0]
    )
    for bad in ("null", "0", "-1", "2.5", "¹"):
        response = operator.get("/api/runs/", {"page_size": bad})
        assert response.status_code == 400, bad
        assert response.json()["problems"] == [{"path": "page_size", "message": "must be a whole number, at least 1"}]
    assert (
        len(operator.get("/api/runs/", {"page_size": 10**30}).json()["results"]) == 1
    )  # over the maximum: the maximum


@pytest.mark.django_db
@pytest.mark.parametrize("position", [b"o=99999999999999999999&p=x", b"p=2000-13-45", b"o=1&r=1&p=yesterday"])
def test_a_forged_cursor_is_a_400_naming_the_cursor(operator, position):
    wf = workflow(steps({"id": "a", "action": "echo"}, defaults=NOWHERE), slug="f")
    run, _ = run_start(workflow=wf)
    cursor = base64.b64encode(position).decode()
    for url in (f"/api/runs/?cursor={cursor}", f"/api/runs/{run.pk}/events/?cursor={cursor}"):
        response = operator.get(url)
        assert response.status_code == 400, (url, response.content)
        assert response.json()["problems"] == [
            {"path": "cursor", "message": "invalid cursor: follow the next/previous links"}
        ]


@pytest.mark.django_db
def test_events_after_an_id_give_only_the_later_events_in_order(operator):
    wf = workflow(steps({"id": "a", "action": "echo"}, {"id": "b", "action": "echo"}, defaults=NOWHERE), slug="after")
    run, _ = run_start(workflow=wf)
    other, _ = run_start(workflow=wf)
    every = [e["id"] for e in operator.get(f"/api/runs/{run.pk}/events/").json()["results"]]
    assert len(every) >= 3
    later = operator.get(f"/api/runs/{run.pk}/events/?after={every[0]}").json()
    assert [e["id"] for e in later["results"]] == every[1:]
    assert operator.get(f"/api/runs/{run.pk}/events/?after={every[-1]}").json()["results"] == []
    # Another run's later events are not this run's.
    assert operator.get(f"/api/runs/{other.pk}/events/?after={every[-1]}").json()["results"]
    paged = operator.get(f"/api/runs/{run.pk}/events/?after={every[0]}&page_size=1").json()
    assert [e["id"] for e in paged["results"]] == every[1:2]
    assert [e["id"] for e in operator.get(paged["next"]).json()["results"]] == every[2:3]
    for bad in ("x", "-1", "1.5", "99999999999999999999999"):
        refused = operator.get(f"/api/runs/{run.pk}/events/?after={bad}")
        assert refused.status_code == 400, bad
        assert [p["path"] for p in refused.json()["problems"]] == ["after"], refused.json()
