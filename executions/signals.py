"""Signal wiring of the runtime, connected once from ExecutionsConfig.ready()."""

from __future__ import annotations

from celery.signals import task_postrun
from django.db import connections


def drop_broken_connections(**_kwargs) -> None:
    """After a task: close a database connection that raised and no longer answers.

    Workers keep their connections across tasks (CELERY_DB_REUSE_MAX), so one broken by a database
    restart must not fail the tasks that follow it.
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and conn.errors_occurred and not conn.is_usable():
            conn.close()
        conn.errors_occurred = False


def connect() -> None:
    task_postrun.connect(drop_broken_connections, dispatch_uid="chordflow.drop_broken_connections", weak=False)
