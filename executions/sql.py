"""Hot-path statements the ORM cannot express: UPDATE ... RETURNING (PostgreSQL, SQLite >= 3.35).

Each saves the SELECT that would follow the UPDATE on every step attempt and every fan-out branch.
Where the database lacks RETURNING, the same result comes from the UPDATE and a SELECT.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection

from executions.models import StepRun
from executions.states import StepStatus

CLAIM_FIELDS = (
    "id", "run_id", "step_id", "branch_index", "parent_id", "input", "item", "attempts", "attempt_base", "queued_at",
)  # fmt: skip


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _returning() -> bool:
    return connection.features.can_return_columns_from_insert


def claim(*, step_run_id: int, attempt: int, now: datetime, sources: frozenset[str]) -> StepRun | None:
    """Move attempt `attempt` to running from one of `sources` and read what the attempt needs, in one
    statement. None when the guard refuses (claimed already, or moot). Call it through the gate."""
    sources = sorted(sources)
    table = _q(StepRun._meta.db_table)
    where = f"id = %s AND attempts = %s AND status IN ({', '.join(['%s'] * len(sources))})"
    params = [StepStatus.RUNNING, attempt, connection.ops.adapt_datetimefield_value(now), step_run_id, attempt - 1]
    update = f"UPDATE {table} SET status = %s, attempts = %s, started_at = %s, next_retry_at = NULL WHERE {where}"
    params += sources
    if _returning():
        rows = list(StepRun.objects.raw(f"{update} RETURNING {', '.join(_q(f) for f in CLAIM_FIELDS)}", params))
        return rows[0] if rows else None
    with connection.cursor() as cursor:
        cursor.execute(update, params)
        if cursor.rowcount != 1:
            return None
    return StepRun.objects.only(*CLAIM_FIELDS).get(pk=step_run_id)


def count_branch(parent_id: int) -> tuple[int, int, str]:
    """Count one more finished branch on its for_each step: (done, count, the step's status)."""
    table = _q(StepRun._meta.db_table)
    update = f"UPDATE {table} SET branches_done = branches_done + 1 WHERE id = %s"
    with connection.cursor() as cursor:
        if _returning():
            cursor.execute(f"{update} RETURNING branches_done, branch_count, status", [parent_id])
            return cursor.fetchone()
        cursor.execute(update, [parent_id])
    return StepRun.objects.filter(pk=parent_id).values_list("branches_done", "branch_count", "status").get()
