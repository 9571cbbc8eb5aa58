"""Logging filters for development: the beat's housekeeping tasks print only when they did something."""

from __future__ import annotations

import ast
import logging

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
