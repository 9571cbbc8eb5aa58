"""/metrics: exact counts from a real scrape after runs on a real two-process worker, and its auth."""

import threading

import pytest
from django.db import connection, connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from approvals.models import Approval
from executions import events
from executions.gauges import samples as gauge_samples
from executions.metrics import metrics_fold
from executions.models import MetricCursor, MetricTotal, Run
from executions.retention import purge_runs
from executions.services import run_start
from executions.states import RunStatus
from tests.support.metrics import scrape, value
from tests.support.runs import steps, wait_for_run, wait_until, workflow

RETRY = {"max_attempts": 3, "backoff": 0.05, "backoff_max": 0.1, "jitter": False}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_scrape_counts_exactly_what_two_worker_processes_ran():
    wf = workflow(
        steps(
            {"id": "a", "action": "echo"},
            {"id": "flaky", "action": "test.flaky", "depends_on": ["a"], "params": {"succeed_on": 2}, "retry": RETRY},
            {"id": "fan", "action": "echo", "depends_on": ["a"], "for_each": "{{ [1, 2, 3, 4, 5] }}"},
        ),
        slug="metrics-ok",
    )
    failing = workflow(
        steps({"id": "boom", "action": "test.permanent"}, {"id": "never", "action": "echo", "depends_on": ["boom"]}),
        slug="metrics-bad",
    )
    asking = workflow(steps({"id": "charge", "action": "test.permanent", "on_failure": "escalate"}), slug="metrics-ask")
    runs = [run_start(workflow=wf, input={})[0] for _ in range(3)] + [run_start(workflow=failing, input={})[0]]
    escalated = run_start(workflow=asking, input={})[0]
    for run in runs:
        wait_for_run(run.pk)
    wait_for_run(escalated.pk, statuses={RunStatus.WAITING})

    samples = scrape()
    assert value(samples, "chordflow_runs_started_total", workflow="metrics-ok") == 3
    assert value(samples, "chordflow_runs_started_total", workflow="metrics-bad") == 1
    assert value(samples, "chordflow_runs_finished_total", workflow="metrics-ok", status="succeeded") == 3
    assert value(samples, "chordflow_runs_finished_total", workflow="metrics-bad", status="failed") == 1
    assert value(samples, "chordflow_runs_finished_total", workflow="metrics-ok", status="failed") == 0
    # a: 3 attempts; flaky: 2 each (one retry); fan: 5 branches each
    attempts = {"a": 3, "flaky": 6, "fan": 15}
    for step, count in attempts.items():
        labels = {"workflow": "metrics-ok", "step": step, "queue": "default"}
        assert value(samples, "chordflow_step_attempts_total", **labels) == count, step
        assert value(samples, "chordflow_step_queue_wait_seconds_count", **labels) == (3 if step == "flaky" else count)
    flaky = {"workflow": "metrics-ok", "step": "flaky", "queue": "default"}
    assert value(samples, "chordflow_step_retries_total", **flaky) == 3
    assert value(samples, "chordflow_step_duration_seconds_count", **flaky, status="retrying") == 3
    assert value(samples, "chordflow_step_duration_seconds_count", **flaky, status="succeeded") == 3
    boom = {"workflow": "metrics-bad", "step": "boom", "queue": "default"}
    assert value(samples, "chordflow_step_duration_seconds_count", **boom, status="failed") == 1
    run_hist = {"workflow": "metrics-ok", "status": "succeeded"}
    assert value(samples, "chordflow_run_duration_seconds_count", **run_hist) == 3
    assert value(samples, "chordflow_run_duration_seconds_bucket", **run_hist, le="+Inf") == 3
    assert value(samples, "chordflow_run_duration_seconds_sum", **run_hist) > 0
    charge = {"workflow": "metrics-ask", "step": "charge"}
    assert value(samples, "chordflow_escalations_total", **charge) == 1
    assert value(samples, "chordflow_step_duration_seconds_count", **charge, queue="default", status="escalated") == 1
    assert value(samples, "chordflow_approvals_pending", workflow="metrics-ask") == 1
    assert value(samples, "chordflow_queue_depth", queue="default") == 0
    assert value(samples, "chordflow_runs_active", workflow="metrics-ask", status="waiting") == 1
    # a workflow with nothing unfinished reads 0, not "no data"
    assert samples[("chordflow_runs_active", (("status", "running"), ("workflow", "metrics-ok")))] == 0
    assert samples[("chordflow_metrics_fold_lag_seconds", ())] == 0

    # A second scrape and beat's own fold count nothing twice.
    metrics_fold(samples=gauge_samples())
    again = scrape()
    for key, number in samples.items():
        if key[0].startswith("chordflow_") and key[0].endswith(("_total", "_count", "_bucket", "_sum")):
            assert again[key] == number, key


@pytest.mark.django_db(transaction=True)
def test_counters_survive_retention_and_label_no_run():
    wf = workflow(steps({"id": "a", "action": "echo", "queue": "nobody-reads-this"}), slug="metrics-kept")
    waiting = value(scrape(), "chordflow_queue_depth", queue="nobody-reads-this")  # other tests' messages
    run, _ = run_start(workflow=wf, input={})
    run_start(workflow=wf, input={})
    assert value(scrape(), "chordflow_runs_started_total", workflow="metrics-kept") == 2
    assert value(scrape(), "chordflow_queue_depth", queue="nobody-reads-this") == waiting + 2  # the broker's list
    active = value(scrape(), "chordflow_runs_active", workflow="metrics-kept", status="running")
    assert active == 2
    with transaction.atomic(), events.event_batch():
        from executions.transitions import run_finish

        run_finish(run_id=run.pk, status=RunStatus.CANCELLED, by="test")
    Run.objects.filter(pk=run.pk).update(finished_at="2000-01-01T00:00:00Z")
    assert purge_runs(older_than_days=1)["metrics-kept"] == 1
    assert not Run.objects.filter(pk=run.pk).exists()
    samples = scrape()
    assert value(samples, "chordflow_runs_started_total", workflow="metrics-kept") == 2
    assert value(samples, "chordflow_runs_finished_total", workflow="metrics-kept", status="cancelled") == 1
    assert not any(str(run.pk) in str(labels) for _, labels in samples)


@pytest.mark.django_db(transaction=True)
def test_a_scrape_costs_the_same_queries_for_ten_runs_as_for_a_hundred():
    wf = workflow(steps({"id": "a", "action": "echo", "queue": "nobody-reads-this"}), slug="metrics-cost")

    def queries_of_a_scrape(runs: int) -> int:
        for _ in range(runs):
            run_start(workflow=wf, input={})
        scrape()  # folds the new events
        with CaptureQueriesContext(connection) as queries:
            scrape()
        return len(queries)

    assert queries_of_a_scrape(10) == queries_of_a_scrape(90)


@pytest.mark.django_db(transaction=True)
def test_approvals_pending_is_a_gauge_per_workflow():
    wf = workflow(
        steps({"id": "ok", "type": "approval", "params": {"approvers": {"users": ["alice"]}}}), slug="metrics-ask"
    )
    run_start(workflow=wf, input={})
    run_start(workflow=wf, input={})
    assert Approval.objects.count() == 2
    assert value(scrape(), "chordflow_approvals_pending", workflow="metrics-ask") == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("token", "header", "status"),
    [
        ("", None, 401),  # production without a token: closed, never open
        ("s3cret-token", None, 401),
        ("s3cret-token", "Bearer wrong", 401),
        ("s3cret-token", "Basic s3cret-token", 401),
        ("s3cret-token", "Bearer s3cret-token", 200),
    ],
)
def test_production_metrics_need_the_bearer_token(settings, token, header, status):
    settings.CHORDFLOW_METRICS_REQUIRE_TOKEN = True
    settings.CHORDFLOW_METRICS_TOKEN = token
    headers = {"HTTP_AUTHORIZATION": header} if header else {}
    response = Client().get("/metrics", **headers)
    assert response.status_code == status
    if status == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert b"CHORDFLOW_METRICS_TOKEN" in response.content
        assert b"chordflow_" not in response.content


def test_production_settings_close_metrics_whatever_the_environment():
    from pathlib import Path

    source = (Path(__file__).resolve().parents[2] / "config/settings/production.py").read_text()
    assert "CHORDFLOW_METRICS_REQUIRE_TOKEN = True" in source


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_committed_after_a_newer_one_is_still_counted_once(on_postgres):
    """PostgreSQL takes ids at insert: a transaction holding a lower id can commit after a fold
    passed a higher one. The fold reads only transactions older than every open one."""
    wf = workflow(steps({"id": "a", "action": "echo", "queue": "nobody-reads-this"}), slug="metrics-late")
    run, _ = run_start(workflow=wf, input={})
    metrics_fold()
    before = MetricTotal.objects.get(series="runs_started", workflow="metrics-late").count
    holding, release = threading.Event(), threading.Event()

    def slow_writer():
        try:
            with transaction.atomic():
                events.record(run.pk, "run.started")  # a lower id, committed last
                holding.set()
                release.wait(10)
        finally:
            connections.close_all()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert holding.wait(10)
    events.record(run.pk, "run.started")  # a higher id, committed now
    metrics_fold()
    release.set()
    writer.join()
    metrics_fold()
    metrics_fold()
    wait_until(lambda: MetricTotal.objects.get(series="runs_started", workflow="metrics-late").count == before + 2)


def test_stored_buckets_of_other_bounds_are_fitted_not_fatal():
    from executions.metrics import fit

    assert fit([1, 2, 3], 5) == [1, 2, 3, 0, 0]
    assert fit([1, 2, 3], 2) == [1, 2]
    assert fit(None, 2) == [0, 0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_scrape_does_not_wait_for_a_fold_holding_the_cursor(on_postgres):
    wf = workflow(steps({"id": "a", "action": "echo", "queue": "nobody-reads-this"}), slug="metrics-busy")
    run_start(workflow=wf, input={})
    metrics_fold()
    run_start(workflow=wf, input={})  # something new to fold
    holding, release = threading.Event(), threading.Event()

    def long_fold():
        try:
            with transaction.atomic():
                MetricCursor.objects.select_for_update().get(pk=1)
                holding.set()
                release.wait(30)
        finally:
            connections.close_all()

    folder = threading.Thread(target=long_fold)
    folder.start()
    try:
        assert holding.wait(10)
        samples = scrape()  # answered with the totals folded so far, not after the 30 s
        assert value(samples, "chordflow_runs_started_total", workflow="metrics-busy") == 1
        assert not release.is_set()
    finally:
        release.set()
        folder.join()
    assert value(scrape(), "chordflow_runs_started_total", workflow="metrics-busy") == 2
