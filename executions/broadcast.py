"""The Channels broadcast of run events: a listener that publishes each committed batch to the groups
`run.<id>` and `runs`. Delivery is at most once; the RunEvent rows are the record."""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import threading
from collections.abc import Sequence
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

ALL_RUNS_GROUP = "runs"


def run_group(run_id: Any) -> str:
    return f"run.{run_id}"


def publish(payloads: Sequence[dict]) -> None:
    """Hand events to this process's publisher thread; a failure is logged, never raised: events are hints."""
    if not payloads or not getattr(settings, "CHORDFLOW_BROADCAST_EVENTS", True):
        return
    _publisher.submit(list(payloads))


async def _send_all(layer, payloads: list[dict]) -> None:
    for body in payloads:
        message = {"type": "run.event", "event": body}
        await layer.group_send(run_group(body["run"]), message)
        await layer.group_send(ALL_RUNS_GROUP, message)


class _Publisher:
    """One thread per process with one event loop, sending what the transactions of that process commit.

    `async_to_sync(group_send)` from every commit built a new event loop and Redis connection each
    time: 15% of a step's time in the worker. The thread keeps one loop and its connection pool, takes
    everything queued since its last send as one batch, and takes the work off the task's path.
    It starts on first use in each process, so it survives the prefork pool's fork.
    """

    def __init__(self) -> None:
        self._pid: int | None = None
        self._queue: queue.SimpleQueue[list[dict] | None] = queue.SimpleQueue()
        self._idle = threading.Event()

    def submit(self, payloads: list[dict]) -> None:
        if self._pid != os.getpid():
            self._start()
        self._idle.clear()
        self._queue.put(payloads)

    def _start(self) -> None:
        self._pid = os.getpid()
        self._queue = queue.SimpleQueue()
        self._idle = threading.Event()
        threading.Thread(target=self._run, name="chordflow-events", daemon=True).start()
        atexit.register(self.flush)

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until everything submitted so far is sent (tests, and process exit)."""
        return self._pid != os.getpid() or self._idle.wait(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        layer = get_channel_layer()
        while True:
            batch = self._queue.get()
            while not self._queue.empty():
                batch = batch + (self._queue.get_nowait() or [])
            if layer is not None and batch:
                try:
                    loop.run_until_complete(_send_all(layer, batch))
                except Exception:
                    logger.warning("could not publish %d run events to Channels", len(batch), exc_info=True)
            if self._queue.empty():
                self._idle.set()


_publisher = _Publisher()
