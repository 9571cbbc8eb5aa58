"""Concurrency limits: at most `limit` runs of a bucket at once, queued in order, cancelled by strategy."""

import threading

import pytest
from django.db import connection

from executions.models import Run, RunEvent
from executions.services import run_cancel, run_start
from executions.states import RunStatus
from executions.sweeper import sweep
from tests.support.api import token_client, user_with
from tests.support.runs import steps, wait_for_run, workflow
from workflows.definition import parse_definition
from workflows.exceptions import DefinitionError, InputValidationError

# On the worker: a run that gets its slot later is advanced there (and the test waits for it to finish).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]
HOLD = {"id": "hold", "type": "approval", "params": {"approvers": {"users": ["nobody"]}}}  # keeps its slot
WAITING = {RunStatus.WAITING}


def limited(slug: str, *specs, **concurrency):
    return workflow(steps(*specs, concurrency=concurrency), slug=slug)


def most_at_once(runs) -> int:
    """The largest number of these runs running at one moment, from their rows' start and finish times."""
    moments = []
    for run in runs:
        moments += [(run.started_at, 1), (run.finished_at, -1)]
    now = highest = 0
    for _, change in sorted(moments, key=lambda m: (m[0], m[1])):  # a finish before a start at the same time
        now += change
        highest = max(highest, now)
    return highest


def test_six_runs_started_at_once_under_limit_two_never_run_more_than_two_and_all_succeed():
    wf = limited(
        "two-at-once",
        {"id": "a", "action": "test.sleep_then_record", "params": {"seconds": 0.3}},
        {"id": "b", "action": "echo", "depends_on": ["a"]},
        limit=2,
    )
    started = [run_start(workflow=wf)[0] for _ in range(6)]
    assert [run.status for run in started] == [RunStatus.RUNNING] * 2 + [RunStatus.PENDING] * 4
    finished = [wait_for_run(run.pk) for run in started]
    assert {run.status for run in finished} == {RunStatus.SUCCEEDED}
    assert most_at_once(finished) == 2
    # in arrival order: each queued run started no earlier than the one before it
    assert [run.started_at for run in finished] == sorted(run.started_at for run in finished)
    assert RunEvent.objects.filter(run=started[5], kind="run.queued").get().message == (
        "waiting for a concurrency slot: 2 of 2 running"
    )


def test_a_keyed_limit_runs_keys_in_parallel_and_one_key_at_a_time():
    wf = limited(
        "per-customer",
        {"id": "a", "action": "test.sleep_then_record", "params": {"seconds": 0.5}},
        limit=1,
        key="{{ input.customer }}",
    )
    first, second, other = (run_start(workflow=wf, input={"customer": c})[0] for c in ("c-42", "c-42", "c-7"))
    assert (first.status, second.status, other.status) == (RunStatus.RUNNING, RunStatus.PENDING, RunStatus.RUNNING)
    assert (first.concurrency_key, other.concurrency_key) == ("c-42", "c-7")
    first, second, other = (wait_for_run(run.pk) for run in (first, second, other))
    assert {first.status, second.status, other.status} == {RunStatus.SUCCEEDED}
    assert second.started_at >= first.finished_at  # the same key waited
    assert other.started_at < first.finished_at  # another key did not


def test_a_waiting_run_says_why_and_starts_when_a_run_of_its_bucket_ends_any_way():
    wf = limited("queued", HOLD, limit=1)
    holder, _ = run_start(workflow=wf)
    queued, _ = run_start(workflow=wf)
    assert (holder.status, queued.status) == (RunStatus.WAITING, RunStatus.PENDING)
    viewer = token_client(user_with("executions.view_run"))
    body = viewer.get(f"/api/runs/{queued.pk}/").json()
    assert body["status"] == "pending" and body["pending_reason"] == "waiting for a concurrency slot: 1 of 1 running"
    assert viewer.get(f"/api/runs/{holder.pk}/").json()["pending_reason"] is None
    run_cancel(run_id=holder.pk, by="user:test")  # a cancel frees the slot as a success would
    queued.refresh_from_db()
    assert queued.status == RunStatus.RUNNING and queued.started_at is not None


def test_cancel_newest_and_cancel_in_progress():
    newest = limited("newest", HOLD, limit=1, strategy="cancel_newest")
    kept, _ = run_start(workflow=newest)
    refused, _ = run_start(workflow=newest)
    assert (kept.status, refused.status) == (RunStatus.WAITING, RunStatus.CANCELLED)
    assert RunEvent.objects.get(run=refused, kind="run.cancelled").message.endswith(
        "concurrency limit reached: 1 of 1 running"
    )
    in_progress = limited("in-progress", HOLD, limit=1, strategy="cancel_in_progress")
    old, _ = run_start(workflow=in_progress)
    new, _ = run_start(workflow=in_progress)
    old.refresh_from_db()
    assert (old.status, new.status) == (RunStatus.CANCELLED, RunStatus.WAITING)
    assert f"to make room for run {new.pk}" in RunEvent.objects.get(run=old, kind="run.cancelled").message


def test_the_sweep_starts_a_waiting_run_whose_slot_a_crash_left_free():
    wf = limited("healed", HOLD, limit=1)
    holder, _ = run_start(workflow=wf)
    queued, _ = run_start(workflow=wf)
    # A crash between the holder's end and the start of the next: the rows say the slot is free.
    Run.objects.filter(pk=holder.pk).update(status=RunStatus.CANCELLED)
    assert sweep()["runs_admitted"] == 1
    queued.refresh_from_db()
    assert queued.status == RunStatus.RUNNING
    assert sweep()["runs_admitted"] == 0


def test_concurrent_starts_never_exceed_the_limit(on_postgres):
    wf = limited("race", HOLD, limit=2)
    barrier = threading.Barrier(8)
    errors = []

    def start():
        try:
            barrier.wait()
            run_start(workflow=wf)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    statuses = sorted(Run.objects.filter(workflow=wf).values_list("status", flat=True))
    assert statuses == ["pending"] * 6 + ["waiting"] * 2


def test_definitions_and_inputs_are_checked_with_clear_problems():
    for concurrency, problem in [
        ({"limit": 0}, "concurrency.limit: must be a whole number from 1 to 10000"),
        ({"limit": 2, "strategy": "drop"}, "concurrency.strategy: must be one of queue, cancel_newest"),
        ({"limit": 2, "key": "customer"}, "concurrency.key: must be a string holding an expression"),
        ({"limit": 2, "key": "{{ steps.a.output }}"}, "concurrency.key: unknown name 'steps'"),
        ({"limit": 2, "per": 3}, "concurrency.per: unknown key"),
        (5, "concurrency: must be an object"),
    ]:
        with pytest.raises(DefinitionError, match=problem.replace(".", r"\.").replace("(", r"\(")):
            parse_definition(steps({"id": "a", "action": "echo"}, concurrency=concurrency))
    wf = limited("keyed", {"id": "a", "action": "echo"}, limit=1, key="{{ input.customer.id }}")
    with pytest.raises(InputValidationError, match=r"concurrency\.key: cannot be computed from this input"):
        run_start(workflow=wf, input={})
    assert not Run.objects.filter(workflow=wf).exists()
    starter = token_client(user_with("executions.add_run", "executions.view_run"))
    refused = starter.post("/api/workflows/keyed/runs/", {"input": {"customer": {"id": "x" * 300}}}, format="json")
    assert refused.status_code == 400 and refused.json()["problems"][0]["path"] == "concurrency.key"
