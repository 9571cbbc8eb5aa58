"""Step logs end to end: an action on a real worker logs, REST reads the lines back with filters, the
bounds hold, failures and tracebacks land there; and, in this process, what a log costs in SQL."""

import re
import threading
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from config.asgi import application
from executions import attempts, broadcast
from executions.models import StepLog, StepRun
from executions.retention import delete_runs
from executions.services import run_cancel, run_start
from executions.states import RunStatus, StepStatus
from executions.sweeper import sweep
from tests.executions.test_consumers import cookie_for, frames_until
from tests.support.actions import counter
from tests.support.api import token_client, user_with
from tests.support.runs import step_row, steps, wait_for_run, wait_until, workflow
from tests.support.services import purge_nowhere
from tests.support.worker import WorkerProcess
from workflows.action_log import LogLevel

NOWHERE = {"queue": "nobody-reads-this"}
LINES = [
    {"level": "debug", "message": "connecting to %s", "args": ["db-1"]},
    {"level": "info", "message": "fetched %d rows", "args": [42], "extra": {"rows": 42, "table": "orders"}},
    {"level": "warning", "message": "slow query: %.1f s", "args": [2.5], "extra": {"sql": "SELECT 1"}},
    {"level": "error", "message": "gave up on %(shard)s", "args": [{"shard": "eu"}]},
]


@pytest.fixture
def viewer():
    return token_client(user_with("executions.view_run"))


def logs(client, run, query: str = "") -> list[dict]:
    response = client.get(f"/api/runs/{run.pk}/logs/{query}")
    assert response.status_code == 200, response.json()
    return response.json()["results"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_an_action_on_the_worker_logs_lines_that_rest_reads_back_with_filters(viewer):
    per_item = {"level": "info", "message": "item {{ item }}", "extra": {"item": "{{ item }}"}}
    wf = workflow(
        steps(
            {"id": "fetch", "action": "test.log", "params": {"lines": LINES}},
            {
                "id": "each",
                "action": "test.log",
                "depends_on": ["fetch"],
                "for_each": "{{ [1, 2] }}",
                "params": {"lines": [per_item]},
            },
        )
    )
    run, _ = run_start(workflow=wf)
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED

    every = logs(viewer, run)
    assert [(line["step"], line["level"], line["message"]) for line in every[:4]] == [
        ("fetch", "debug", "connecting to db-1"),
        ("fetch", "info", "fetched 42 rows"),
        ("fetch", "warning", "slow query: 2.5 s"),
        ("fetch", "error", "gave up on eu"),
    ]
    fetched = every[1]
    assert fetched["extra"] == {"rows": 42, "table": "orders"}
    assert (fetched["run"], fetched["attempt"], fetched["branch"]) == (str(run.pk), 1, None)
    assert fetched["at"] and fetched["id"] < every[2]["id"]
    assert sorted((line["branch"], line["message"]) for line in every[4:]) == [(0, "item 1"), (1, "item 2")]

    # level is the least level shown
    assert [line["level"] for line in logs(viewer, run, "?step=fetch&level=warning")] == ["warning", "error"]
    assert [line["level"] for line in logs(viewer, run, "?level=error")] == ["error"]
    assert len(logs(viewer, run, "?step=fetch&level=debug")) == 4
    assert [line["extra"] for line in logs(viewer, run, "?step=each&branch=1")] == [{"item": 2}]
    assert logs(viewer, run, "?step=fetch&attempt=2") == []
    assert len(logs(viewer, run, "?attempt=1&step=")) == 6  # an empty parameter is left out
    # after a line id, and page by page
    assert [line["id"] for line in logs(viewer, run, f"?after={every[3]['id']}")] == [e["id"] for e in every[4:]]
    page = viewer.get(f"/api/runs/{run.pk}/logs/?page_size=4").json()
    assert [line["id"] for line in page["results"]] == [e["id"] for e in every[:4]]
    assert [line["id"] for line in viewer.get(page["next"]).json()["results"]] == [e["id"] for e in every[4:]]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_past_the_bound_later_lines_are_dropped_and_one_line_says_how_many(viewer):
    run, _ = run_start(workflow=workflow(steps({"id": "chatty", "action": "test.log", "params": {"repeat": 1500}})))
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
    lines = list(StepLog.objects.filter(run=run).order_by("id"))
    assert len(lines) == 1001  # CHORDFLOW_STEP_LOG_MAX_LINES (1000), then the marker
    assert [line.message for line in lines[:2]] == ["line 1 of 1500", "line 2 of 1500"]
    assert lines[999].message == "line 1000 of 1500"  # the beginning is kept, with no hole
    marker = lines[-1]
    assert marker.get_level_display() == "warning"
    assert marker.message == "500 later lines dropped: this attempt reached CHORDFLOW_STEP_LOG_MAX_LINES (1,000 lines)"
    assert marker.extra == {"dropped": 500}
    assert [line["id"] for line in logs(viewer, run, "?level=warning")] == [marker.pk]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_an_uncaught_exception_lands_in_the_log_with_its_traceback_on_every_attempt(viewer):
    wf = workflow(
        steps(
            {
                "id": "boom",
                "action": "test.log",
                "params": {"lines": [{"level": "info", "message": "starting"}], "raise": "bad row 7"},
                "retry": {"max_attempts": 2, "backoff": 0.1, "jitter": False},
            }
        )
    )
    run, _ = run_start(workflow=wf)
    assert wait_for_run(run.pk).status == RunStatus.FAILED
    lines = logs(viewer, run)
    assert [(line["attempt"], line["level"]) for line in lines] == [
        (1, "info"),
        (1, "error"),
        (2, "info"),
        (2, "error"),
    ]
    error = lines[1]
    first, *trace = error["message"].splitlines()
    assert first == "ValueError: bad row 7"
    assert trace[0] == "Traceback (most recent call last):" and trace[-1] == "ValueError: bad row 7"
    assert any("tests/support/actions.py" in frame and "log_lines" in frame for frame in trace)
    assert error["extra"] == {"error_type": "ValueError", "retryable": True}
    assert [line["attempt"] for line in logs(viewer, run, "?level=error&attempt=2")] == [2]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_timeout_and_a_permanent_error_are_logged_as_errors(viewer):
    wf = workflow(
        steps(
            {"id": "slow", "action": "test.sleep_then_record", "params": {"seconds": 5}, "timeout": 1},
            {"id": "never", "action": "test.permanent", "depends_on": ["slow"]},
            defaults={"retry": {"max_attempts": 1}, "on_failure": "continue"},
        )
    )
    run, _ = run_start(workflow=wf)
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED  # both failed, and the run went on
    by_step = {line["step"]: line for line in logs(viewer, run, "?level=error")}
    assert by_step["slow"]["message"] == "TimeoutError: attempt 1 ran past the step's timeout of 1s"
    assert by_step["never"]["message"] == "PermanentError: this can never work"
    assert by_step["never"]["extra"] == {"error_type": "PermanentError", "retryable": False}


@pytest.mark.django_db(transaction=True)
def test_the_sweep_logs_an_attempt_whose_worker_died():
    run = in_process({"id": "s", "action": "test.log", "timeout": 1, "retry": {"max_attempts": 1}})
    row = step_row(run, "s")
    assert attempts.step_claim(step_run_id=row.pk, attempt=1) is not None  # then the worker died
    assert sweep(now=timezone.now() + timedelta(seconds=60))["attempts_expired"] == 1
    (line,) = StepLog.objects.filter(run=run)
    assert (line.attempt, line.level, line.extra) == (
        1,
        LogLevel.ERROR,
        {"error_type": "LostAttemptError", "retryable": True},
    )
    assert line.message.startswith("LostAttemptError: attempt 1 did not finish within the step's timeout of 1s")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_running_steps_lines_show_within_a_second_and_each_write_sends_one_hint_to_the_page(viewer):
    go = f"test:go:{uuid.uuid4()}"
    wf = workflow(steps({"id": "slow", "action": "test.log", "params": {"repeat": 3, "wait_key": go}}))
    run, _ = run_start(workflow=wf)
    headers = cookie_for(user_with("executions.view_run"))

    async def scenario():
        socket = WebsocketCommunicator(application, f"/ws/runs/{run.pk}/", headers=headers)
        assert (await socket.connect())[0]
        first = await frames_until(socket, lambda item: item["type"] == "step.log", timeout=30)
        running = await sync_to_async(lambda: step_row(run, "slow").status)()
        seen = await sync_to_async(logs)(viewer, run)
        await sync_to_async(counter().set)(go, 1)
        rest = await frames_until(socket, lambda item: item["type"] == "run.succeeded", timeout=30)
        await socket.disconnect()
        return first, running, seen, rest

    first, running, seen, rest = async_to_sync(scenario)()
    assert running == StepStatus.RUNNING  # written while the attempt runs (the action asks cancelled())
    assert [line["message"] for line in seen] == ["line 1 of 3", "line 2 of 3", "line 3 of 3"]
    hints = [item for frame in [*first, *rest] for item in frame if item["type"] == "step.log"]
    assert hints[0] == {
        "type": "step.log", "run": str(run.pk), "step": "slow", "branch": None, "attempt": 1, "id": None,
        "last_log": seen[-1]["id"], "lines": 3,
    }  # fmt: skip
    last = StepLog.objects.filter(run=run).latest("id")
    assert last.message == "done waiting"
    assert [(hint["lines"], hint["last_log"]) for hint in hints[1:]] == [(1, last.pk)]  # with the outcome


def test_log_hints_of_one_step_in_one_send_become_one_and_are_never_counted_as_branch_events():
    hint = {"type": "step.log", "run": "r", "step": "fan", "id": None}
    bodies = [
        *({**hint, "branch": i, "attempt": 1, "last_log": 10 + i, "lines": 2} for i in range(60)),
        {**hint, "step": "other", "branch": None, "attempt": 3, "last_log": 5, "lines": 1},
        *({"id": i, "type": "step.succeeded", "run": "r", "step": "fan", "branch": i} for i in range(3)),
    ]
    assert broadcast.coalesce(bodies) == [
        {**hint, "branch": None, "attempt": 1, "last_log": 69, "lines": 120},
        {**hint, "step": "other", "branch": None, "attempt": 3, "last_log": 5, "lines": 1},
        *bodies[-3:],
    ]


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_attempt_keeps_the_lines_it_wrote_and_the_sweep_says_why_it_ended():
    go = f"test:go:{uuid.uuid4()}"
    params = {"repeat": 2, "wait_key": go, "then_hang": 60}
    wf = workflow(
        steps({"id": "s", "action": "test.log", "params": params, "timeout": 2, "retry": {"max_attempts": 1}},
              defaults={"queue": "steplogs-kill"})
    )  # fmt: skip
    doomed = WorkerProcess(name="steplogs-doomed", concurrency=1, queues="steplogs-kill").start()
    try:
        run, _ = run_start(workflow=wf)
        wait_until(lambda: StepLog.objects.filter(run=run).count() == 2, what="the lines written mid-attempt")
        counter().set(go, 1)
        wait_until(lambda: counter().exists(f"{go}:hanging"), what="a line left in the buffer")
    finally:
        doomed.kill()
    assert sweep(now=timezone.now() + timedelta(seconds=60))["attempts_expired"] == 1
    messages = list(StepLog.objects.filter(run=run).order_by("id").values_list("message", flat=True))
    assert messages[:2] == ["line 1 of 2", "line 2 of 2"]
    assert [m.split(":")[0] for m in messages[2:]] in (["LostAttemptError"], ["done waiting", "LostAttemptError"])
    assert "never written" not in messages  # the buffer died with the worker, as the README says


@pytest.mark.django_db
def test_bad_filters_are_a_400_naming_each_parameter_and_an_unknown_run_a_404(viewer):
    run, _ = run_start(workflow=workflow(steps({"id": "a", "action": "echo"}, defaults=NOWHERE)))
    for query, path in [
        ("level=loud", "level"),
        ("level=WARNING", "level"),
        ("step=ghost", "step"),
        ("attempt=0", "attempt"),
        ("attempt=x", "attempt"),
        ("branch=-1", "branch"),
        ("after=1.5", "after"),
        ("after=99999999999999999999999", "after"),
        ("page_size=0", "page_size"),
    ]:
        response = viewer.get(f"/api/runs/{run.pk}/logs/?{query}")
        assert response.status_code == 400, query
        assert [p["path"] for p in response.json()["problems"]] == [path], (query, response.json())
    assert "no step 'ghost'" in viewer.get(f"/api/runs/{run.pk}/logs/?step=ghost").json()["detail"]
    assert viewer.get("/api/runs/00000000-0000-0000-0000-000000000000/logs/").status_code == 404
    assert viewer.get("/api/runs/nope/logs/").status_code == 404
    assert token_client(user_with()).get(f"/api/runs/{run.pk}/logs/").status_code == 403


# --- in this process: what a log costs, secrets, retention --------------------------------------------


def in_process(*specs, input=None):
    purge_nowhere()
    run, _ = run_start(workflow=workflow(steps(*specs, defaults=NOWHERE)), input=input or {})
    return run


def execute(run, step_id: str):
    row = step_row(run, step_id)
    with CaptureQueriesContext(connection) as queries:
        attempts.step_execute(step_run_id=row.pk, attempt=row.attempts + 1)
    return [query["sql"] for query in queries.captured_queries]


@pytest.mark.django_db(transaction=True)
def test_an_attempt_that_logs_nothing_costs_no_statement_and_one_that_logs_costs_one_insert():
    silent = execute(in_process({"id": "s", "action": "test.log", "params": {}}), "s")
    assert not [sql for sql in silent if "executions_steplog" in sql]
    run = in_process({"id": "s", "action": "test.log", "params": {"lines": LINES, "repeat": 20}})
    chatty = execute(run, "s")
    touching = [sql for sql in chatty if "executions_steplog" in sql]
    assert len(touching) == 1 and touching[0].startswith("INSERT INTO")
    assert len(chatty) == len(silent) + 1
    assert StepLog.objects.filter(run=run).count() == 24


@pytest.mark.django_db(transaction=True)
def test_a_revealed_secret_is_redacted_from_messages_extra_and_the_traceback(monkeypatch):
    secret = "sk_live_51H8very-secret"
    monkeypatch.setenv("CHORDFLOW_SECRET_API_KEY", secret)
    line = {"level": "info", "message": "calling with %s", "args": ["{{ secret('API_KEY') }}"],
            "extra": {"auth": "Bearer {{ secret('API_KEY') }}"}}  # fmt: skip
    run = in_process(
        {
            "id": "s",
            "action": "test.log",
            "retry": {"max_attempts": 1},
            "params": {"lines": [line], "raise": "refused {{ secret('API_KEY') }}"},
        }
    )
    execute(run, "s")
    lines = list(StepLog.objects.filter(run=run).order_by("id"))
    assert [line.message.splitlines()[0] for line in lines] == [
        "calling with ⟪secret:API_KEY⟫",
        "ValueError: refused ⟪secret:API_KEY⟫",
    ]
    assert lines[0].extra == {"auth": "Bearer ⟪secret:API_KEY⟫"}
    assert "Traceback" in lines[1].message
    assert secret not in repr(list(StepLog.objects.filter(run=run).values()))


@pytest.mark.django_db(transaction=True)
def test_a_cancelled_attempt_keeps_its_lines_and_says_it_stopped():
    run = in_process(
        {"id": "s", "action": "test.log", "params": {"repeat": 2, "wait_key": f"test:never:{uuid.uuid4()}"}}
    )
    row = step_row(run, "s")

    def worker():
        try:
            attempts.step_execute(step_run_id=row.pk, attempt=1)
        finally:
            connections.close_all()

    thread = threading.Thread(target=worker)
    thread.start()
    wait_until(lambda: step_row(run, "s").status == StepStatus.RUNNING, what="the attempt running")
    run_cancel(run_id=run.pk)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert list(StepLog.objects.filter(run=run).order_by("id").values_list("level", "message")) == [
        (20, "line 1 of 2"),
        (20, "line 2 of 2"),
        (20, "stopped: the step was cancelled (stopped waiting)"),
    ]
    assert step_row(run, "s").status == StepStatus.CANCELLED


@pytest.mark.django_db(transaction=True)
def test_retention_deletes_a_purged_runs_log_lines_with_one_statement():
    run = in_process({"id": "s", "action": "test.log", "params": {"repeat": 3}})
    keep = in_process({"id": "s", "action": "test.log", "params": {"repeat": 2}})
    execute(run, "s")
    execute(keep, "s")
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
    with CaptureQueriesContext(connection) as queries:
        assert delete_runs([run.pk]) == 1
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('DELETE FROM "executions_steplog"')]
    assert len(deletes) == 1
    assert not StepLog.objects.filter(run_id=run.pk).exists()
    assert StepLog.objects.filter(run=keep).count() == 2


# --- the admin ----------------------------------------------------------------------------------------

XSS = '<script>window.pwned = 1</script>"><img src=x onerror=alert(1)>'


def add_lines(run, step_id: str, count: int, *, branch=None, message="line {}", extra=None):
    now = timezone.now()
    StepLog.objects.bulk_create(
        StepLog(
            run=run, step_id=step_id, branch_index=branch, attempt=2, level=LogLevel.WARNING,
            message=message.format(number), extra=extra or {}, logged_at=now,
        )
        for number in range(count)
    )  # fmt: skip


@pytest.mark.django_db
def test_the_step_panel_shows_the_steps_latest_lines_escaped(admin_client):
    run, _ = run_start(
        workflow=workflow(steps({"id": "fan", "action": "echo", "for_each": "{{ [1, 2] }}"}, defaults=NOWHERE))
    )
    add_lines(run, "fan", 1, branch=0, message=XSS, extra={"html": XSS})
    add_lines(run, "fan", 250, branch=1)
    panel = admin_client.get(reverse("admin:executions_run_step", args=[run.pk, "fan"])).content.decode()
    assert "<script>window.pwned" not in panel and "<img src=x" not in panel
    shown = re.findall(r'<tr data-log="(\d+)" data-level="warning">', panel)
    latest = list(StepLog.objects.filter(run=run).order_by("-id").values_list("pk", flat=True)[:200])
    assert [int(pk) for pk in shown] == latest[::-1]  # the latest 200, oldest first: XSS's line is not among them
    assert f'data-last-log="{latest[0]}"' in panel
    assert '<td>2</td><td>1</td><td><pre class="cf-log-message">line 249</pre>' in panel  # attempt, branch, text
    assert f'/api/runs/{run.pk}/logs/?step=fan"' in panel

    StepLog.objects.filter(run=run, branch_index=1).delete()
    panel = admin_client.get(reverse("admin:executions_run_step", args=[run.pk, "fan"])).content.decode()
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in panel and "<script>window" not in panel
    branch = StepRun.objects.get(run=run, step_id="fan", branch_index=0)
    page = admin_client.get(reverse("admin:executions_steprun_change", args=[branch.pk])).content.decode()
    assert 'id="cf-step-log"' in page and "&lt;script&gt;window.pwned" in page and "<script>window" not in page


@pytest.mark.django_db
def test_a_step_that_logged_nothing_says_so_and_its_page_costs_one_query_more(admin_client):
    run, _ = run_start(workflow=workflow(steps({"id": "a", "action": "echo"}, defaults=NOWHERE)))
    url = reverse("admin:executions_run_step", args=[run.pk, "a"])
    assert "nothing logged yet" in admin_client.get(url).content.decode()
    with CaptureQueriesContext(connection) as quiet:
        admin_client.get(url)
    add_lines(run, "a", 300)
    with CaptureQueriesContext(connection) as chatty:
        assert "nothing logged yet" not in admin_client.get(url).content.decode()
    assert len(chatty) == len(quiet)
    assert sum("executions_steplog" in q["sql"] for q in chatty.captured_queries) == 1
