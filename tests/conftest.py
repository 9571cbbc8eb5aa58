"""Fixtures shared by the whole suite."""

import pytest
from channels.layers import channel_layers
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


@pytest.fixture(autouse=True)
def worker_idle_before_flush(request):
    """A test on the worker ends once the worker has finished what the test sent it.

    Set up after pytest-django's database fixtures (plugins' autouse fixtures come first), so torn
    down before the flush: a worker still writing would deadlock PostgreSQL's TRUNCATE, or write
    rows into the next test.
    """
    yield
    if "celery_worker" in request.fixturenames:
        request.getfixturevalue("celery_worker").wait_idle(timeout=30, strict=False)


@pytest.fixture(autouse=True)
def channel_layer_per_test():
    """Each test gets channel-layer instances of its own, never one an earlier test's loop left.

    Each `async_to_sync` runs a new event loop, and channels_redis keeps per-channel asyncio locks
    on the layer instance. A receive cut short as its loop ends can leave such a lock held and
    bound to that dead loop; the next test's receive on the same instance then raises "bound to a
    different event loop" (and an in-process websocket consumer goes silent). A worker or daphne
    runs one loop for its life, so this is a property of the suite, not of the product.
    """
    yield
    channel_layers.backends.clear()


@pytest.fixture
def on_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite has no row locks (set DATABASE_URL)")
