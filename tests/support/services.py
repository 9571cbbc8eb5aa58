"""Playing the worker's part in-process: steps go to a queue no worker reads, tests call the services."""

from __future__ import annotations

import threading

from django.db import connections

from config.celery_app import app
from executions import attempts
from executions.models import StepRun
from tests.support.runs import steps, workflow

NOWHERE = "nobody-reads-this"


def purge_nowhere() -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(NOWHERE)


def nowhere_depth() -> int:
    """Messages waiting in NOWHERE, read from the broker (zero when the queue was never declared)."""
    with app.connection_for_read() as conn:
        return conn.default_channel.client.llen(NOWHERE)


def play(step_run: StepRun, output=None) -> None:
    """Do what step_execute does for a successful attempt."""
    row = attempts.step_claim(step_run_id=step_run.pk, attempt=step_run.attempts + 1)
    assert row is not None
    attempts.step_succeed(row=row, output=output)


def at_once(*calls) -> None:
    """Run the calls in threads released together by a barrier; fail if any raised."""
    barrier = threading.Barrier(len(calls))
    errors = []

    def run(call):
        try:
            barrier.wait()
            call()
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def diamond():
    return workflow(
        steps(
            {"id": "a", "action": "echo"},
            {"id": "b", "action": "echo", "depends_on": ["a"]},
            {"id": "c", "action": "echo", "depends_on": ["a"]},
            {"id": "d", "action": "echo", "depends_on": ["b", "c"]},
            defaults={"queue": NOWHERE},
        )
    )
