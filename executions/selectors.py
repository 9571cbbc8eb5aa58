"""Reads for runs, steps and events, shaped for the REST API and the admin without per-row queries."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.db.models import Count, OuterRef, QuerySet, Subquery

from executions.models import Run, RunEvent, Schedule, ScheduleFire, StepLog, StepRun
from workflows.action_log import LEVEL_BY_NAME
from workflows.services import version_spec


@dataclass(frozen=True)
class RunFacts:
    """What never changes about a run: its version and workflow."""

    version_id: int
    content_hash: str
    workflow: str


@lru_cache(maxsize=10_000)
def run_facts(run_id: Any) -> RunFacts:
    """Cached per process: one query for the first step of a run a worker sees, none after."""
    version_id, content_hash, slug = (
        Run.objects.filter(pk=run_id).values_list("version_id", "version__content_hash", "workflow__slug").get()
    )
    return RunFacts(version_id=version_id, content_hash=content_hash, workflow=slug)


def step_label(*, run_id: Any, step_id: str, branch: int | str | None, attempt: int) -> str:
    """What a step task is, in words, for its `argsrepr` (Flower, the worker's log):
    "shop-orders run 1a2b3c4d step charge branch 3 attempt 1". The slug comes from the cached run facts."""
    words = [f"step {step_id}"]
    if run_id is not None:
        words.insert(0, f"{run_facts(str(run_id)).workflow} run {str(run_id)[:8]}")
    if branch is not None:  # a chunk of branches says which: "branches 0-31"
        words.append(f"branch {branch}" if isinstance(branch, int) else f"branches {branch}")
    words.append(f"attempt {attempt}")
    return " ".join(words)


def step_run_label(*, step_run_id: int, attempt: int) -> str:
    """The label of a step run's attempt, read from its row (for a retry, which Celery re-sends without it)."""
    row = StepRun.objects.filter(pk=step_run_id).values("run_id", "step_id", "branch_index").first()
    if row is None:
        return f"step run {step_run_id} attempt {attempt}"
    return step_label(run_id=row["run_id"], step_id=row["step_id"], branch=row["branch_index"], attempt=attempt)


def parse_run_id(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None


def run_list(
    *,
    workflow: str | None = None,
    status: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Run]:
    runs = Run.objects.select_related("workflow", "version").defer("version__definition")
    if workflow:
        runs = runs.filter(workflow__slug=workflow)
    if status:
        runs = runs.filter(status=status)
    if created_after:
        runs = runs.filter(created_at__gte=created_after)
    if created_before:
        runs = runs.filter(created_at__lt=created_before)
    return runs


def run_get(run_id: Any) -> Run | None:
    parsed = parse_run_id(run_id)
    if parsed is None:
        return None
    return run_list().filter(pk=parsed).first()


def run_steps(run: Run) -> list[StepRun]:
    """The run's steps (not branches) in definition order, each for_each step with `branch_counts`."""
    rows = {row.step_id: row for row in StepRun.objects.filter(run=run, branch_index__isnull=True)}
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    branch_totals = (
        StepRun.objects.filter(run=run, branch_index__isnull=False).values("step_id", "status").annotate(n=Count("id"))
    )
    for row in branch_totals:
        counts[row["step_id"]][row["status"]] = row["n"]
    order = [step.id for step in version_spec(run.version).steps]
    ordered = [rows[step_id] for step_id in order if step_id in rows]
    for row in ordered:
        row.branch_counts = dict(counts[row.step_id]) if row.branch_count is not None else None
    return ordered


def step_branches(run: Run, step_id: str) -> QuerySet[StepRun]:
    return StepRun.objects.filter(run=run, step_id=step_id, branch_index__isnull=False)


def run_events(run: Run, after: int | None = None) -> QuerySet[RunEvent]:
    events = RunEvent.objects.filter(run=run)
    return events if after is None else events.filter(id__gt=after)


def run_logs(
    run: Run,
    *,
    step: str | None = None,
    level: str | None = None,
    attempt: int | None = None,
    branch: int | None = None,
    after: int | None = None,
) -> QuerySet[StepLog]:
    """A run's log lines in the order they were written; `level` is the least level shown."""
    lines = StepLog.objects.filter(run=run)
    if step:
        lines = lines.filter(step_id=step)
    if level:
        lines = lines.filter(level__gte=LEVEL_BY_NAME[level])
    if attempt is not None:
        lines = lines.filter(attempt=attempt)
    if branch is not None:
        lines = lines.filter(branch_index=branch)
    return lines if after is None else lines.filter(id__gt=after)


def schedule_list() -> QuerySet[Schedule]:
    """Schedules with their workflow and their latest fire's id and outcome, in the same query."""
    latest = ScheduleFire.objects.filter(schedule=OuterRef("pk")).order_by("-nominal_time")
    return Schedule.objects.select_related("workflow").annotate(
        last_fire_id=Subquery(latest.values("pk")[:1]), last_outcome=Subquery(latest.values("outcome")[:1])
    )


def with_last_fires(schedules: list[Schedule]) -> list[Schedule]:
    """Attach `last_fire` (a ScheduleFire or None) to schedules from schedule_list(), in one query."""
    fires = ScheduleFire.objects.in_bulk([s.last_fire_id for s in schedules if s.last_fire_id])
    for schedule in schedules:
        schedule.last_fire = fires.get(schedule.last_fire_id)
    return schedules
