"""Writes that the database may abort for a lock conflict, run again in a transaction of their own."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, connection, transaction

from executions import events

logger = logging.getLogger(__name__)

TRIES = 5
T = TypeVar("T")


def retried(write: Callable[[], T], *, what: str, tries: int = TRIES) -> T:
    """`write` in one transaction and event batch; when the database aborts it (a PostgreSQL deadlock,
    SQLite's lock timeout), after a short random pause, again, up to `tries` times.

    PostgreSQL breaks a deadlock by aborting one side; the other proceeds, so the aborted one's next
    try finds the locks free. Inside the caller's transaction it runs once: a retry here could not
    undo the caller's part.
    """
    if connection.in_atomic_block:
        with events.event_batch():
            return write()
    for attempt in range(tries):
        try:
            with transaction.atomic(), events.event_batch():
                return write()
        except OperationalError:
            if attempt == tries - 1:
                raise
            logger.info("%s hit a lock conflict; trying again", what, exc_info=True)
            time.sleep(random.uniform(0, 0.05 * 2**attempt))  # noqa: S311 (jitter, not a secret)
    raise AssertionError("unreachable")
