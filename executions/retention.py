"""Retention: finished runs older than their workflow's retention are deleted, in bounded batches.

A run's rows (steps and branches, events, step logs, and what other apps keep per run, such as approvals) go
in one transaction per batch of runs, with one DELETE per table: deleting through the ORM's collector
would load every branch row (outputs included) into memory first. Unfinished runs are never deleted.
Celery's result rows (django-celery-results) older than the global retention go too.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from executions import metrics
from executions.models import Run, RunEvent, ScheduleFire, StepLog, StepRun
from executions.states import RUN_FINISHED
from workflows.models import Workflow
from workflows.services import version_spec

logger = logging.getLogger(__name__)

PurgeHook = Callable[[list[Any]], None]
_hooks: list[PurgeHook] = []


def on_purge(hook: PurgeHook) -> None:
    """Call `hook(run_ids)` inside each batch's transaction, before the runs' own rows go: an app built
    on the runtime (approvals) deletes what it keeps per run."""
    if hook not in _hooks:
        _hooks.append(hook)


def retention_days(workflow: Workflow) -> int:
    """The workflow's `retention_days` (its current version's), else CHORDFLOW_RETENTION_DAYS."""
    version = workflow.versions.order_by("-number").first()
    days = version_spec(version).retention_days if version is not None else None
    return settings.CHORDFLOW_RETENTION_DAYS if days is None else days


def expired(workflow: Workflow, cutoff: datetime) -> QuerySet[Run]:
    """The workflow's finished runs that finished (or, lacking that time, were created) before `cutoff`."""
    before = Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff)
    return Run.objects.filter(before, workflow=workflow, status__in=RUN_FINISHED)


def purge_runs(
    *,
    older_than_days: int | None = None,
    workflow: Workflow | None = None,
    dry_run: bool = False,
    batch: int | None = None,
    now: datetime | None = None,
) -> Counter:
    """Delete finished runs past retention; returns the count per workflow slug (what would go, when dry).

    `older_than_days` overrides every workflow's retention (the purge_runs command); `workflow` limits
    it to one.
    """
    now = now or timezone.now()
    batch = batch or settings.CHORDFLOW_RETENTION_BATCH
    if not dry_run:
        metrics.metrics_fold()  # the events about to go are counted first: the totals outlive them
    counts: Counter = Counter()
    workflows = [workflow] if workflow is not None else Workflow.objects.order_by("slug")
    for each in workflows:
        days = retention_days(each) if older_than_days is None else older_than_days
        runs = expired(each, now - timedelta(days=days))
        if dry_run:
            counts[each.slug] = runs.count()
            continue
        while ids := list(runs.values_list("pk", flat=True)[:batch]):
            deleted = delete_runs(ids)
            counts[each.slug] += deleted
            if not deleted:
                break  # every one was retried meanwhile: the next look finds them unfinished
    if not dry_run and workflow is None:
        days = settings.CHORDFLOW_RETENTION_DAYS if older_than_days is None else older_than_days
        _expire_task_results(now - timedelta(days=days), batch)
    if counts:
        logger.info("retention: %s runs %s", sum(counts.values()), "would go" if dry_run else "deleted")
    return counts


def delete_runs(ids: Sequence[Any]) -> int:
    """Delete those of these runs that are still finished, and everything kept for them, in one
    transaction. They are locked and checked again first: a retry that landed since they were chosen
    keeps its run."""
    with transaction.atomic():
        ids = list(
            Run.objects.select_for_update().filter(pk__in=ids, status__in=RUN_FINISHED).values_list("pk", flat=True)
        )
        if not ids:
            return 0
        for hook in list(_hooks):
            hook(list(ids))
        ScheduleFire.objects.filter(run_id__in=ids).update(run=None)
        for model in (RunEvent, StepLog, StepRun):
            _delete_where_run_in(model, "run_id", ids)
        _delete_where_run_in(Run, "id", ids)
    return len(ids)


def _delete_where_run_in(model, column: str, ids: Sequence[Any]) -> None:
    pk = Run._meta.pk
    values = [pk.get_db_prep_value(value, connection) for value in ids]
    table = connection.ops.quote_name(model._meta.db_table)
    placeholders = ", ".join(["%s"] * len(values))
    where = connection.ops.quote_name(column)
    with connection.cursor() as cursor:  # names from the models, values as parameters
        cursor.execute(f"DELETE FROM {table} WHERE {where} IN ({placeholders})", values)  # noqa: S608


def _expire_task_results(cutoff: datetime, batch: int) -> None:
    """Celery's result rows (when the django-db result backend keeps them), a batch per statement."""
    from django_celery_results.models import GroupResult, TaskResult

    for model in (TaskResult, GroupResult):
        old = model.objects.filter(date_done__lt=cutoff)
        while pks := list(old.values_list("pk", flat=True)[:batch]):
            model.objects.filter(pk__in=pks).delete()
