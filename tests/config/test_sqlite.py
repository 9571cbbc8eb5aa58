"""SQLite is tuned so that concurrent writers wait for each other instead of failing."""

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction


@pytest.fixture
def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite-specific")


@pytest.mark.django_db(transaction=True)
def test_sqlite_runs_in_wal_mode(sqlite_only):
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_see_database_is_locked(sqlite_only):
    errors: list[Exception] = []
    user_model = get_user_model()

    def writer(n: int) -> None:
        try:
            for i in range(25):
                with transaction.atomic():
                    # Read, then write: the pattern that fails with DEFERRED transactions.
                    user_model.objects.filter(username__startswith=f"w{n}-").count()
                    user_model.objects.create(username=f"w{n}-{i}")
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert user_model.objects.count() == 6 * 25
