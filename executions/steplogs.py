"""Step logs: the sink that writes an attempt's buffered lines (one bulk insert per flush), and the hint
that tells an open run page, after commit, that a step has new lines.

One `step.log` hint per flush, never one per line: `{"type": "step.log", "run", "step", "branch",
"attempt", "id": null, "last_log": <newest line id>, "lines": <count>}`. Like every broadcast it is
delivered at most once; the page reads the lines over REST (`GET /api/runs/{id}/logs/?after=`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction

from executions import broadcast
from executions.models import StepLog
from workflows.action_log import ActionLog, LogLevel, LogLine

logger = logging.getLogger(__name__)


class AttemptSink:
    """Writes one attempt's lines. Inside the transaction that records the attempt's outcome, a failed
    write fails it with the outcome (a lock conflict is tried again, lines and outcome together; the
    lines are JSON-safe, so little else can fail). Outside one (a flush while the attempt runs) a
    failed write is logged and its lines are lost: a log never fails a step."""

    def __init__(self, *, run_id: Any, step_id: str, branch: int | None, attempt: int) -> None:
        self.run_id, self.step_id, self.branch, self.attempt = run_id, step_id, branch, attempt

    def __call__(self, lines: list[LogLine]) -> None:
        if not lines:
            return
        rows = [
            StepLog(
                run_id=self.run_id, step_id=self.step_id, branch_index=self.branch, attempt=self.attempt,
                level=line.level, message=line.message, extra=line.extra, logged_at=line.logged_at,
            )
            for line in lines
        ]  # fmt: skip
        if connection.in_atomic_block:
            StepLog.objects.bulk_create(rows)
        else:
            try:
                StepLog.objects.bulk_create(rows)
            except Exception:
                logger.warning("could not write %d log lines of step %s", len(rows), self.step_id, exc_info=True)
                return
        hint = {
            "type": "step.log", "run": str(self.run_id), "step": self.step_id, "branch": self.branch,
            "attempt": self.attempt, "id": None, "last_log": rows[-1].pk, "lines": len(rows),
        }  # fmt: skip
        transaction.on_commit(lambda: broadcast.publish([hint]))


class AttemptLog(ActionLog):
    def may_flush(self) -> bool:
        """Not inside the action's own transaction: its rollback would take the lines with it."""
        return not connection.in_atomic_block


def attempt_log(*, run_id: Any, step_id: str, branch: int | None, attempt: int, redact) -> AttemptLog:
    """The `context.log` of one attempt, writing to the database, with `redact` applied to every line."""
    return AttemptLog(sink=AttemptSink(run_id=run_id, step_id=step_id, branch=branch, attempt=attempt), redact=redact)


def writer(log: ActionLog) -> Callable[[], None]:
    """Ends the attempt's log and returns what writes its last lines: called inside the transaction that
    records the attempt's outcome, once per try of it (a retried transaction writes them again)."""
    lines = log.close()
    return lambda: log.sink(lines) if lines and log.sink is not None else None


def failure_line(log: ActionLog, *, error_type: str, message: str, traceback: str = "", retryable: bool) -> None:
    """The engine's line saying how an attempt failed (with the traceback of an uncaught exception);
    kept whatever the bounds. `message` and `traceback` are redacted by the caller already."""
    text = f"{error_type}: {message}" + (f"\n{traceback.rstrip()}" if traceback else "")
    log.log(LogLevel.ERROR, "%s", text, extra={"error_type": error_type, "retryable": retryable}, engine=True)


def lost_attempt_writer(*, run_id: Any, step_id: str, branch: int | None, attempt: int, error_type: str, message: str):
    """The sweep's line for an attempt whose worker died (its unwritten lines are lost: this says why),
    to write with the failure it records."""
    log = attempt_log(run_id=run_id, step_id=step_id, branch=branch, attempt=attempt, redact=lambda value: value)
    failure_line(log, error_type=error_type, message=message, retryable=True)
    write = writer(log)
    write.only_if_moved = True  # an attempt that finished meanwhile was not lost (attempts.logged)
    return write
