"""Lines logged during an attempt carry its run, step and attempt, in the text and the JSON format:
the settings' own formatters in this process, and the worker's real output."""

import io
import json
import logging
import time
import uuid

import pytest
from django.conf import settings
from django.utils.module_loading import import_string

from config.logfilters import attempt_scope
from executions.services import run_start
from executions.states import RunStatus
from tests.support.runs import steps, wait_for_run, workflow
from tests.support.worker import WorkerProcess


def configured(name: str) -> logging.Formatter:
    """The formatter LOGGING names, built as logging's dictConfig builds it."""
    spec = dict(settings.LOGGING["formatters"][name])
    factory = import_string(spec.pop("()"))
    return factory(fmt=spec.pop("format"), **spec)


def capture(format_name: str):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(configured(format_name))
    for filter_name in settings.LOGGING["handlers"]["console"]["filters"]:
        handler.addFilter(import_string(settings.LOGGING["filters"][filter_name]["()"])())
    logger = logging.getLogger(f"tests.logfilters.{format_name}")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.INFO
    return logger, stream


def test_the_text_format_shows_run_step_and_attempt_only_inside_an_attempt():
    logger, stream = capture("text")
    logger.info("outside")
    with attempt_scope(run_id="6f1c", step_id="fetch", attempt=2):
        logger.warning("slow answer")
    with attempt_scope(run_id="6f1c", step_id="fan", attempt=1, branch=3):
        logger.info("a branch")
    logger.info("after")
    lines = [line.split(" ", 2)[2] for line in stream.getvalue().splitlines()]  # without the time
    assert lines == [
        "INFO    tests.logfilters.text: outside",
        "WARNING tests.logfilters.text [run=6f1c step=fetch attempt=2]: slow answer",
        "INFO    tests.logfilters.text [run=6f1c step=fan branch=3 attempt=1]: a branch",
        "INFO    tests.logfilters.text: after",
    ]


def test_the_json_format_has_run_step_and_attempt_as_fields_only_inside_an_attempt():
    logger, stream = capture("json")
    logger.info("outside")
    with attempt_scope(run_id="6f1c", step_id="fetch", attempt=2):
        logger.warning("slow answer")
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {"run_id", "step_id", "attempt", "branch", "attempt_tag"}.isdisjoint(outside)
    assert {k: inside[k] for k in ("level", "logger", "message", "run_id", "step_id", "attempt")} == {
        "level": "WARNING", "logger": "tests.logfilters.json", "message": "slow answer", "run_id": "6f1c",
        "step_id": "fetch", "attempt": 2,
    }  # fmt: skip
    assert "branch" not in inside and "attempt_tag" not in inside


def worker_lines(path, needle: str, timeout: float = 10) -> list[str]:
    """The lines of a worker's log holding `needle` (its output reaches the file a moment after)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in path.read_text(errors="replace").splitlines() if needle in line]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.mark.django_db(transaction=True)
def test_the_real_workers_lines_carry_the_attempt_in_text_and_in_json(celery_worker, monkeypatch, tmp_path):
    said = f"said by an action {uuid.uuid4()}"
    wf = workflow(steps({"id": "talk", "action": "test.log", "params": {"python_log": said}}))
    run, _ = run_start(workflow=wf)
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
    (line,) = worker_lines(celery_worker.log, said)
    assert line.endswith(f"WARNING tests.actions [run={run.pk} step=talk attempt=1]: {said}"), line

    monkeypatch.setenv("LOG_FORMAT", "json")
    worker = WorkerProcess(name="json-logs", concurrency=1, queues="json-logs", log=tmp_path / "worker.log").start()
    try:
        wf = workflow(
            steps({"id": "talk", "action": "test.log", "params": {"python_log": said}}, defaults={"queue": "json-logs"})
        )
        run, _ = run_start(workflow=wf)
        assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
        (line,) = worker_lines(worker.log, said)
    finally:
        worker.stop()
    record = json.loads(line)
    assert {k: record[k] for k in ("level", "logger", "message", "run_id", "step_id", "attempt")} == {
        "level": "WARNING", "logger": "tests.actions", "message": said, "run_id": str(run.pk), "step_id": "talk",
        "attempt": 1,
    }  # fmt: skip
