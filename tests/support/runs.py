"""Helpers to define workflows and wait for runs in tests."""

from __future__ import annotations

import itertools
import time

from executions.models import Run, RunEvent, StepRun
from executions.states import RUN_FINISHED
from workflows.services import workflow_save

_slugs = itertools.count()


def workflow(definition: dict, slug: str | None = None):
    """Save a definition (with a unique slug) and return the workflow."""
    saved, _version, _created = workflow_save(slug=slug or f"wf-{next(_slugs)}", definition=definition)
    return saved


def steps(*specs: dict, **top) -> dict:
    return {"name": top.pop("name", "test"), "steps": list(specs), **top}


def wait_for_run(run_id, *, timeout: float = 60, statuses=RUN_FINISHED) -> Run:
    """Poll the run's row until its status is one of `statuses`; fail with its events if it is not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = Run.objects.get(pk=run_id)
        if run.status in statuses:
            return run
        time.sleep(0.05)
    events = list(RunEvent.objects.filter(run_id=run_id).values_list("kind", "step_id", "branch_index", "message"))
    step_rows = list(
        StepRun.objects.filter(run_id=run_id, branch_index__isnull=True).values_list("step_id", "status", "attempts")
    )
    raise AssertionError(f"run {run_id} is {run.status} after {timeout}s; steps {step_rows}; events {events[-30:]}")


def wait_until(predicate, *, timeout: float = 30, what: str = "condition") -> None:
    """Poll `predicate` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout}s"
        time.sleep(0.05)


def step_row(run, step_id: str) -> StepRun:
    return StepRun.objects.get(run=run, step_id=step_id, branch_index__isnull=True)
