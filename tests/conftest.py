"""Fixtures shared by the whole suite."""

import pytest
from django.db import connection

from config.celery_app import app
from tests.support.worker import WorkerProcess


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """One real worker for the session, on the real broker and the test database.

    Tests that use it must be `django_db(transaction=True)`: the worker sees only committed rows.
    """
    with django_db_blocker.unblock():
        app.control.purge()
        worker = WorkerProcess(name="session").start()
    yield worker
    worker.stop()


@pytest.fixture
def on_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite has no row locks (set DATABASE_URL)")
