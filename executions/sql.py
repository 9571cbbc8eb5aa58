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


def _marks(values: list) -> str:
    return ", ".join(["%s"] * len(values))


def _returning() -> bool:
    return connection.features.can_return_columns_from_insert


def claim_many(
    *, step_run_ids: list[int], attempt: int, now: datetime, sources: frozenset[str], task_id: str | None = None
) -> list[StepRun]:
    """Move attempt `attempt` of the rows to running from one of `sources` and read what the attempts
    need, in one statement: the rows it moved (none when the guard refuses: claimed already, or moot).
    `task_id`: the task that runs them, when it is not the one the rows were queued for. Call it
    through the gate."""
    sources = sorted(sources)
    table = _q(StepRun._meta.db_table)
    where = f"id IN ({_marks(step_run_ids)}) AND attempts = %s AND status IN ({_marks(sources)})"
    params = [StepStatus.RUNNING, attempt, connection.ops.adapt_datetimefield_value(now)]
    task = ""
    if task_id is not None:
        task, params = ", task_id = %s", [*params, task_id]
    params += [*step_run_ids, attempt - 1, *sources]
    update = f"UPDATE {table} SET status = %s, attempts = %s, started_at = %s, next_retry_at = NULL{task} WHERE {where}"
    if _returning():
        return list(StepRun.objects.raw(f"{update} RETURNING {', '.join(_q(f) for f in CLAIM_FIELDS)}", params))
    with connection.cursor() as cursor:
        cursor.execute(update, params)
        if not cursor.rowcount:
            return []
    # without RETURNING: the rows now running this attempt since `now` are the ones this statement moved
    return list(StepRun.objects.only(*CLAIM_FIELDS).filter(pk__in=step_run_ids, attempts=attempt, started_at=now))


def succeed_many(*, outcomes: dict[int, tuple], attempt: int, now: datetime, sources: frozenset[str]) -> list[int]:
    """SUCCEED many running rows of attempt `attempt` in one statement; `outcomes` maps a row id to its
    (output, started_at). Returns the ids it moved: a row cancelled meanwhile, or one a newer attempt
    owns, is left as it is. Call it through the gate."""
    ids, sources = list(outcomes), sorted(sources)
    output_field = StepRun._meta.get_field("output")
    table = _q(StepRun._meta.db_table)
    outputs, starts, params = [], [], []
    for pk, (output, started_at) in outcomes.items():
        outputs.append((pk, output_field.get_db_prep_save(output, connection)))
        starts.append((pk, connection.ops.adapt_datetimefield_value(started_at)))
    cases = []
    json_mark = "%s::jsonb" if connection.vendor == "postgresql" else "%s"  # a column of NULLs has a type too
    for column, values, mark in (("output", outputs, json_mark), ("started_at", starts, "%s")):
        cases.append(f"{_q(column)} = CASE id {' '.join([f'WHEN %s THEN {mark}'] * len(values))} END")
        params += [item for pair in values for item in pair]
    update = (
        f"UPDATE {table} SET status = %s, finished_at = %s, error_type = '', error_message = '', "
        f"error_traceback = '', next_retry_at = NULL, {', '.join(cases)} "
        f"WHERE id IN ({_marks(ids)}) AND attempts = %s AND status IN ({_marks(sources)})"
    )
    params = [StepStatus.SUCCEEDED, connection.ops.adapt_datetimefield_value(now), *params, *ids, attempt, *sources]
    with connection.cursor() as cursor:
        if _returning():
            cursor.execute(f"{update} RETURNING id", params)
            return [pk for (pk,) in cursor.fetchall()]
        cursor.execute(update, params)
    return list(
        StepRun.objects.filter(pk__in=ids, status=StepStatus.SUCCEEDED, finished_at=now).values_list("pk", flat=True)
    )


def restamp(*, step_run_ids: list[int], attempt: int, now: datetime) -> set[int]:
    """Claimed rows not started yet get `now` as their start, so the sweep's deadline counts from here.
    Returns those still running `attempt` (a cancel or the sweep may have taken the others)."""
    table = _q(StepRun._meta.db_table)
    update = (
        f"UPDATE {table} SET started_at = %s WHERE id IN ({_marks(step_run_ids)}) AND attempts = %s AND status = %s"
    )
    params = [connection.ops.adapt_datetimefield_value(now), *step_run_ids, attempt, StepStatus.RUNNING]
    with connection.cursor() as cursor:
        if _returning():
            cursor.execute(f"{update} RETURNING id", params)
            return {pk for (pk,) in cursor.fetchall()}
        cursor.execute(update, params)
    return set(
        StepRun.objects.filter(pk__in=step_run_ids, attempts=attempt, status=StepStatus.RUNNING).values_list(
            "pk", flat=True
        )
    )


def count_branch(parent_id: int, finished: int = 1) -> tuple[int, int, str]:
    """Count `finished` more finished branches on their for_each step: (done, count, the step's status)."""
    table = _q(StepRun._meta.db_table)
    update = f"UPDATE {table} SET branches_done = branches_done + %s WHERE id = %s"
    with connection.cursor() as cursor:
        if _returning():
            cursor.execute(f"{update} RETURNING branches_done, branch_count, status", [finished, parent_id])
            return cursor.fetchone()
        cursor.execute(update, [finished, parent_id])
    return StepRun.objects.filter(pk=parent_id).values_list("branches_done", "branch_count", "status").get()
