"""Run and step statuses, and the named transitions between them: each move declares its own sources."""

from __future__ import annotations

from dataclasses import dataclass

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


class Overlap(models.TextChoices):
    """What a schedule's fire does while a run it started is unfinished."""

    SKIP = "skip"  # start nothing
    BUFFER_ONE = "buffer_one"  # start when the running one finishes; at most one waits
    BUFFER_ALL = "buffer_all"  # every fire waits its turn, one run after another
    CANCEL_OTHER = "cancel_other"  # cancel the unfinished runs, then start
    ALLOW_ALL = "allow_all"  # start regardless


class FireOutcome(models.TextChoices):
    STARTED = "started"
    SKIPPED = "skipped"
    BUFFERED = "buffered"  # waits for the schedule's unfinished run to finish
    MISSED = "missed"  # older than the catch-up window when the tick saw it
    CANCELLED_OTHER = "cancelled_other"  # started after cancelling the schedule's unfinished runs
    FAILED = "failed"  # could not start a run (the workflow is inactive, or its input schema changed)


S, R = StepStatus, RunStatus

STEP_FINISHED = frozenset({S.SUCCEEDED, S.FAILED, S.SKIPPED, S.CANCELLED})
STEP_IN_FLIGHT = frozenset({S.QUEUED, S.RUNNING, S.RETRYING})
STEP_UNFINISHED = frozenset(set(StepStatus) - STEP_FINISHED)
RUN_FINISHED = frozenset({R.SUCCEEDED, R.FAILED, R.CANCELLED})
RUN_ACTIVE = frozenset({R.RUNNING, R.WAITING})
RUN_UNFINISHED = frozenset(set(RunStatus) - RUN_FINISHED)


@dataclass(frozen=True)
class Transition:
    """One named move: the statuses it may leave, the one it reaches, the event it records (if any).

    A guarded UPDATE (executions.transitions) changes a row only while its status is among `sources`:
    a redelivered message, a late retry or a task that finishes after a cancel finds zero rows.
    """

    name: str
    sources: frozenset[str]
    target: str
    event: str | None

    def allows(self, source: str) -> bool:
        return source in self.sources


def _step(name: str, sources: set[StepStatus], target: StepStatus, event: str | None) -> Transition:
    return Transition(name, frozenset(sources), target, event)


class StepMove:
    """Every way a step or a branch changes status. A finished step leaves its status only by RESET."""

    QUEUE = _step("queue", {S.PENDING}, S.QUEUED, "step.queued")  # its dependencies are satisfied
    REQUEUE = _step("requeue", {S.QUEUED}, S.QUEUED, None)  # the sweep re-publishes a lost message
    CLAIM = _step("claim", {S.QUEUED, S.RETRYING}, S.RUNNING, "step.started")  # an attempt starts
    FAN_OUT = _step("fan out", {S.PENDING}, S.RUNNING, "step.started")  # a for_each step creates its branches
    RETRY_LATER = _step("retry later", {S.RUNNING}, S.RETRYING, "step.retrying")  # an attempt failed; more left
    SUCCEED = _step("succeed", {S.RUNNING}, S.SUCCEEDED, "step.succeeded")  # an attempt, or a for_each's join
    SUCCEED_EMPTY = _step("succeed empty", {S.PENDING}, S.SUCCEEDED, "step.succeeded")  # for_each over []
    FAIL = _step("fail", {S.RUNNING}, S.FAILED, "step.failed")  # the last attempt failed, or a branch did
    FAIL_UNSTARTED = _step("fail unstarted", {S.PENDING}, S.FAILED, "step.failed")  # its expressions failed
    SKIP = _step("skip", {S.PENDING}, S.SKIPPED, "step.skipped")  # `when` was false
    WAIT = _step("wait", {S.PENDING}, S.WAITING, "step.waiting")  # a step a person finishes (approval)
    ESCALATE = _step("escalate", {S.RUNNING}, S.WAITING, "step.waiting")  # failed for good; an operator decides
    RESOLVE_SUCCEED = _step("resolve: succeed", {S.WAITING}, S.SUCCEEDED, "step.succeeded")
    RESOLVE_SKIP = _step("resolve: skip", {S.WAITING}, S.SKIPPED, "step.skipped")
    RESOLVE_FAIL = _step("resolve: fail", {S.WAITING}, S.FAILED, "step.failed")
    RESOLVE_RETRY = _step("resolve: retry", {S.WAITING}, S.QUEUED, "step.queued")  # an operator's retry
    CANCEL = _step("cancel", set(STEP_UNFINISHED), S.CANCELLED, "step.cancelled")
    RESET = _step("reset", {S.FAILED, S.CANCELLED, S.SKIPPED, S.SUCCEEDED}, S.PENDING, None)  # a run retry


def _run(name: str, sources: set[RunStatus], target: RunStatus, event: str) -> Transition:
    return Transition(name, frozenset(sources), target, event)


class RunMove:
    """Every way a run changes status. A finished run leaves its status only by RETRY."""

    START = _run("start", {R.PENDING}, R.RUNNING, "run.started")
    WAIT = _run("wait", {R.RUNNING}, R.WAITING, "run.waiting")  # nothing in flight, a person decides
    RESUME = _run("resume", {R.WAITING}, R.RUNNING, "run.started")
    SUCCEED = _run("succeed", {R.RUNNING, R.WAITING}, R.SUCCEEDED, "run.succeeded")
    FAIL = _run("fail", {R.PENDING, R.RUNNING, R.WAITING}, R.FAILED, "run.failed")
    CANCEL = _run("cancel", {R.PENDING, R.RUNNING, R.WAITING}, R.CANCELLED, "run.cancelled")
    RETRY = _run("retry", {R.FAILED, R.CANCELLED}, R.RUNNING, "run.started")


def transitions(moves: type) -> list[Transition]:
    return [value for value in vars(moves).values() if isinstance(value, Transition)]


RUN_FINISH = {R.SUCCEEDED: RunMove.SUCCEED, R.FAILED: RunMove.FAIL, R.CANCELLED: RunMove.CANCEL}
