"""Logging filters and formats: the attempt's run, step and number on its lines; in development, the
beat's housekeeping tasks print only when they did something."""

from __future__ import annotations

import ast
import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

HOUSEKEEPING_TASKS = frozenset(
    {"executions.schedule_tick", "executions.sweep", "approvals.expire", "executions.metrics_fold"}
)


class SkipIdleHousekeeping(logging.Filter):
    """Drops `Task executions.sweep[…] succeeded …: {'requeued': 0, …}`: every few seconds, and nothing happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, dict) else {}
        if args.get("name") not in HOUSEKEEPING_TASKS or "return_value" not in args:
            return True
        value = args["return_value"]
        try:  # the trace passes the result as its repr
            value = ast.literal_eval(value) if isinstance(value, str) else value
        except (ValueError, SyntaxError):
            return True
        return bool(value) and not (isinstance(value, dict) and not any(value.values()))


# --- run, step and attempt on every line logged during an attempt ------------------------------------
_attempt: contextvars.ContextVar[dict | None] = contextvars.ContextVar("chordflow_attempt", default=None)


@contextmanager
def attempt_scope(*, run_id: Any, step_id: str, attempt: int, branch: int | None = None) -> Iterator[None]:
    """Lines logged inside (by the engine, an action, a library) carry the attempt's run, step and number."""
    fields = {"run_id": str(run_id), "step_id": step_id, "attempt": attempt}
    if branch is not None:
        fields["branch"] = branch
    token = _attempt.set(fields)
    try:
        yield
    finally:
        _attempt.reset(token)


class AttemptContext(logging.Filter):
    """Puts `run_id`, `step_id`, `attempt` (and `branch`) on a record logged inside an attempt_scope();
    the JSON format shows them as fields, the text format as ` [run=… step=… attempt=2]`."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _attempt.get()
        if fields is not None:
            for name, value in fields.items():
                if not hasattr(record, name):
                    setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """The text format, with `[run=… step=… attempt=…]` after the logger's name when the line has them."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.attempt_tag = ""
        if getattr(record, "run_id", None):
            branch = f" branch={record.branch}" if getattr(record, "branch", None) is not None else ""
            record.attempt_tag = f" [run={record.run_id} step={record.step_id}{branch} attempt={record.attempt}]"
        return super().formatMessage(record)
