"""Time limits for an attempt that runs inside another task (a chunk's branch, a chain's next step).

Celery gives a task its time limits; an attempt that runs in a task begun for another one needs its
own, the same: SoftTimeLimitExceeded inside the action after its step's timeout, and the pool
process killed CHORDFLOW_HARD_TIME_LIMIT_GRACE seconds later if the action ignores it (the task's
message comes back; the sweep heals the attempt). The task's own Celery limits stay as a backstop,
and are the only limit for an action stuck in C code that holds the GIL.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from billiard.exceptions import SoftTimeLimitExceeded
from billiard.process import current_process

logger = logging.getLogger(__name__)


@contextmanager
def time_limits(soft: float, hard: float) -> Iterator[None]:
    """SoftTimeLimitExceeded inside the block after `soft` seconds; after `hard`, the pool process is
    killed. Only in a prefork pool process, where the action runs on the main thread; elsewhere (solo
    and threads pools, tests in-process) the task's own limits are all there is."""
    if threading.current_thread() is not threading.main_thread() or not in_pool_process():
        yield
        return

    def expire(_signum, _frame):
        raise SoftTimeLimitExceeded(f"soft time limit ({soft:g}s) exceeded")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, soft)
    _watchdog.arm(hard)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _watchdog.disarm()


def in_pool_process() -> bool:
    """A prefork pool process: where these limits are enforced."""
    return current_process().name.startswith("ForkPoolWorker")


class _Watchdog:
    """One thread per pool process: SIGKILLs the process when an armed deadline passes (an action
    that ignored its soft limit), as the pool does to a task past its hard time limit."""

    def __init__(self) -> None:
        self._deadline: float | None = None
        self._changed = threading.Condition()
        self._pid: int | None = None

    def arm(self, seconds: float) -> None:
        with self._changed:
            if self._pid != os.getpid():  # first use in this process (a fork inherits no threads)
                self._pid = os.getpid()
                threading.Thread(target=self._watch, name="chordflow-chunk-watchdog", daemon=True).start()
            self._deadline = time.monotonic() + seconds
            self._changed.notify()

    def disarm(self) -> None:
        with self._changed:
            self._deadline = None
            self._changed.notify()

    def _watch(self) -> None:
        with self._changed:
            while True:
                if self._deadline is None:
                    self._changed.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left <= 0:
                    logger.error("a branch ran past its hard time limit: killing pool process %s", os.getpid())
                    os.kill(os.getpid(), signal.SIGKILL)
                self._changed.wait(left)


_watchdog = _Watchdog()
