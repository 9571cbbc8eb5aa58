"""Run and step statuses, and the one table of transitions allowed between them."""

from __future__ import annotations

from django.db import models


class StepStatus(models.TextChoices):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class RunStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


S, R = StepStatus, RunStatus

# to-status: the statuses it may be reached from. A finished step or run leaves its status only
# through an explicit retry (failed/cancelled -> pending/running), never through a late task.
STEP_SOURCES: dict[StepStatus, frozenset[StepStatus]] = {
    # Only a run retry moves finished steps back: the failed ones and everything downstream of them.
    S.PENDING: frozenset({S.FAILED, S.CANCELLED, S.SKIPPED, S.SUCCEEDED}),
    S.QUEUED: frozenset({S.PENDING, S.QUEUED, S.RETRYING, S.WAITING}),  # WAITING: an operator's retry
    S.RUNNING: frozenset({S.PENDING, S.QUEUED, S.RETRYING}),  # PENDING: a for_each parent
    S.RETRYING: frozenset({S.RUNNING}),
    S.WAITING: frozenset({S.PENDING, S.QUEUED, S.RUNNING, S.RETRYING}),
    S.SUCCEEDED: frozenset({S.PENDING, S.RUNNING, S.WAITING}),  # PENDING: an empty for_each
    S.FAILED: frozenset({S.PENDING, S.QUEUED, S.RUNNING, S.RETRYING, S.WAITING}),
    S.SKIPPED: frozenset({S.PENDING, S.WAITING}),
    S.CANCELLED: frozenset({S.PENDING, S.QUEUED, S.RUNNING, S.RETRYING, S.WAITING}),
}

RUN_SOURCES: dict[RunStatus, frozenset[RunStatus]] = {
    R.PENDING: frozenset(),
    R.RUNNING: frozenset({R.PENDING, R.WAITING, R.FAILED, R.CANCELLED}),  # FAILED/CANCELLED: retry
    R.WAITING: frozenset({R.RUNNING}),
    R.SUCCEEDED: frozenset({R.PENDING, R.RUNNING, R.WAITING}),
    R.FAILED: frozenset({R.PENDING, R.RUNNING, R.WAITING}),
    R.CANCELLED: frozenset({R.PENDING, R.RUNNING, R.WAITING}),
}

STEP_FINISHED = frozenset({S.SUCCEEDED, S.FAILED, S.SKIPPED, S.CANCELLED})
STEP_IN_FLIGHT = frozenset({S.QUEUED, S.RUNNING, S.RETRYING})
STEP_UNFINISHED = frozenset(set(StepStatus) - STEP_FINISHED)
RUN_FINISHED = frozenset({R.SUCCEEDED, R.FAILED, R.CANCELLED})
RUN_ACTIVE = frozenset({R.RUNNING, R.WAITING})


def step_can(source: StepStatus, target: StepStatus) -> bool:
    return source in STEP_SOURCES[target]


def run_can(source: RunStatus, target: RunStatus) -> bool:
    return source in RUN_SOURCES[target]
