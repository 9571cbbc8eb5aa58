"""Flower as `make run` and compose run it: every queue with its depth, its login, its /metrics."""

import json
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from config.celery_app import app
from executions.services import run_start
from executions.states import RunStatus
from tests.support.flower import FLOWER_SERIES, FlowerProcess, broker_page_depths
from tests.support.runs import steps, wait_for_run, wait_until, workflow

pytestmark = pytest.mark.django_db(transaction=True)
LOGIN = "ops:a-flower-password"
UNCONSUMED = "flower-test-nobody-consumes"
WAITING = 7


@pytest.fixture(scope="module")
def flowers(celery_worker, django_db_blocker):
    """Flower without a login (`make run`) and with one (compose), started once the worker answers,
    so that they know it and its queue, `default`."""
    with django_db_blocker.unblock():
        local, production = FlowerProcess(name="local").start(), FlowerProcess(name="auth", basic_auth=LOGIN).start()
    yield local, production
    local.stop()
    production.stop()
    app.control.disable_events(destination=[celery_worker.node])  # Flower turned them on


@pytest.fixture
def waiting_messages():
    """WAITING step tasks on a queue a step names but no worker consumes."""
    with app.connection() as connection:
        connection.default_channel.queue_purge(UNCONSUMED)
    for _ in range(WAITING):
        app.send_task("executions.step_execute", args=(0,), queue=UNCONSUMED)
    yield
    with app.connection() as connection:
        connection.default_channel.queue_purge(UNCONSUMED)


def test_the_broker_page_shows_every_queue_with_its_depth(flowers, waiting_messages):
    local, _ = flowers
    status, _, page = local.get("/broker")
    assert status == 200
    depths = broker_page_depths(page.decode())
    assert depths.get(UNCONSUMED) == WAITING, depths
    assert "default" in depths, depths  # the worker's queue


def test_the_queue_api_reports_the_depth_to_a_signed_in_user(flowers, waiting_messages, celery_worker):
    _, production = flowers

    def knows_the_worker() -> bool:
        # Its events name the worker before an inspection (at Flower's start, or this refresh, each
        # waiting out its 1 s timeout) has read its queues.
        workers = json.loads(production.get("/api/workers?refresh=1", login=LOGIN)[2])
        return "active_queues" in workers.get(celery_worker.node, {})

    wait_until(knows_the_worker, timeout=20, what="Flower knowing the worker's queues")
    workers = json.loads(production.get("/api/workers", login=LOGIN)[2])
    assert [q["name"] for q in workers[celery_worker.node]["active_queues"]] == ["default"]  # so no fallback
    status, _, body = production.get("/api/queues/length", login=LOGIN)
    assert status == 200, body
    depths = {queue["name"]: queue["messages"] for queue in json.loads(body)["active_queues"]}
    assert depths.get(UNCONSUMED) == WAITING and "default" in depths, depths
    assert not [name for name in depths if "pidbox" in name or name.startswith("celeryev")]  # task queues only


def test_with_a_login_every_page_and_the_api_need_it(flowers):
    _, production = flowers
    for path in ("/", "/workers", "/tasks", "/broker", "/api/workers", "/api/queues/length", "/api/tasks"):
        assert production.get(path)[0] == 401, path
        assert production.get(path, login="ops:wrong")[0] == 401, path
        assert production.get(path, login=LOGIN)[0] == 200, path


def test_without_a_login_the_pages_open_but_the_api_stays_off(flowers):
    """`make run`'s Flower, on 127.0.0.1: FLOWER_UNAUTHENTICATED_API would let any web page a developer
    opens call it (Flower then allows every origin), so it stays unset."""
    local, _ = flowers
    assert local.get("/broker")[0] == 200
    assert local.get("/api/queues/length")[0] == 401


def test_metrics_are_prometheus_text_and_need_no_login(flowers):
    for flower in flowers:
        status, headers, body = flower.get("/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        families = list(text_string_to_metric_families(body.decode()))  # parses, as Prometheus would
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body.decode(), re.M))
        assert families and {name: kind for name, (kind, _) in FLOWER_SERIES.items()}.items() <= types.items()


def test_the_task_list_names_a_step_readably(flowers, celery_worker):
    _, production = flowers

    def hears_the_worker() -> bool:  # Flower turns the worker's events on, then gets its heartbeats
        return json.loads(production.get("/api/workers?status=1", login=LOGIN)[2]).get(celery_worker.node) is True

    wait_until(hears_the_worker, timeout=20, what="Flower receiving the worker's events")
    wf = workflow(steps({"id": "charge", "action": "echo"}), slug="flower-shop")
    run, _ = run_start(workflow=wf)
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
    label = f"flower-shop run {str(run.pk)[:8]} step charge attempt 1"

    def listed() -> bool:
        body = production.get("/api/tasks?taskname=executions.step_execute", login=LOGIN)[2]
        return any(task["args"] == label for task in json.loads(body).values())

    wait_until(listed, timeout=20, what=f"Flower listing the task {label!r}")
