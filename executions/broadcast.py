"""The Channels broadcast of run events: a listener that publishes committed events to the groups
`run.<id>` (every event of that run), `runs` (run-level and approval events of every run) and
`approvals` (a content-free hint that approvals may have changed, for approvers' inboxes).

Each group message carries a list of events: one message per run per send, and a process sends at
most once per `CHORDFLOW_BROADCAST_INTERVAL` (0.25 s), so a 10,000-wide fan-out does not flood
browsers. Within a send, more than `BRANCH_EVENTS_INLINE` branch events of one step become one
`branches.progress` hint: counts of what happened, for the page to refresh its branch counts from
REST. `step.log` hints (executions.steplogs: a step has new log lines) of one step in one send become
one, counting their lines. Delivery is at most once; the RunEvent rows are the record (`?after=`
catches up).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

ALL_RUNS_GROUP = "runs"
# Every signed-in approver's inbox listens here. Messages carry no data (who may see what is the
# inbox's own query): only a hint that approvals, or runs that may hold some, changed.
APPROVALS_GROUP = "approvals"
APPROVALS_CHANGED = {"type": "approvals.changed"}
BRANCH_EVENTS_INLINE = 50  # more branch events of one step in one send become a progress hint


def run_group(run_id: Any) -> str:
    return f"run.{run_id}"


def publish(payloads: Sequence[dict]) -> None:
    """Hand events to this process's publisher thread; a failure is logged, never raised: events are hints."""
    if not payloads or not getattr(settings, "CHORDFLOW_BROADCAST_EVENTS", True):
        return
    _publisher.submit(list(payloads))


def group_messages(payloads: Sequence[dict]) -> list[tuple[str, dict]]:
    """The (group, message) pairs one send publishes: a list of items per run, and one for `runs`."""
    per_run: dict[str, list[dict]] = {}
    for body in payloads:
        per_run.setdefault(body["run"], []).append(body)
    messages = [(run_group(run_id), _message(coalesce(bodies))) for run_id, bodies in per_run.items()]
    overview = [body for body in payloads if body["step"] is None or body["type"].startswith("approval.")]
    if overview:
        messages.append((ALL_RUNS_GROUP, _message(overview)))
        messages.append((APPROVALS_GROUP, _message([APPROVALS_CHANGED])))
    return messages


def _message(items: list[dict]) -> dict:
    return {"type": "run.events", "events": items}


LOG_HINT = "step.log"


def coalesce(bodies: list[dict]) -> list[dict]:
    """One run's events, with the branch events of a step that has many in this send as one hint."""
    bodies = _merge_log_hints(bodies)
    per_step: dict[str, int] = {}
    for body in bodies:
        if body.get("branch") is not None and body["type"] != LOG_HINT:
            per_step[body["step"]] = per_step.get(body["step"], 0) + 1
    wide = {step for step, count in per_step.items() if count > BRANCH_EVENTS_INLINE}
    if not wide:
        return bodies
    items: list[dict] = []
    hints: dict[str, dict] = {}
    for body in bodies:
        if body.get("branch") is None or body["step"] not in wide or body["type"] == LOG_HINT:
            items.append(body)
            continue
        hint = hints.get(body["step"])
        if hint is None:
            hint = {"type": "branches.progress", "run": body["run"], "step": body["step"], "id": None}
            hint.update(last_event=body["id"], events={})
            hints[body["step"]] = hint
            items.append(hint)
        hint["last_event"] = max(hint["last_event"], body["id"])
        hint["events"][body["type"]] = hint["events"].get(body["type"], 0) + 1
    return items


def _merge_log_hints(bodies: list[dict]) -> list[dict]:
    """One `step.log` hint per step: the newest line id, the lines summed; branch and attempt kept only
    when every merged hint had the same."""
    merged: dict[str, dict] = {}
    items: list[dict] = []
    for body in bodies:
        if body["type"] != LOG_HINT:
            items.append(body)
            continue
        hint = merged.get(body["step"])
        if hint is None:
            merged[body["step"]] = hint = dict(body)
            items.append(hint)
            continue
        hint["last_log"] = max(hint["last_log"], body["last_log"])
        hint["lines"] += body["lines"]
        for key in ("branch", "attempt"):
            if hint[key] != body[key]:
                hint[key] = None
    return items


async def _send_all(layer, payloads: list[dict]) -> None:
    for group, message in group_messages(payloads):
        await layer.group_send(group, message)


class _Publisher:
    """One thread per process with one event loop, sending what the transactions of that process commit.

    `async_to_sync(group_send)` from every commit built a new event loop and Redis connection each
    time: 15% of a step's time in the worker. The thread keeps one loop and its connection pool, takes
    everything queued since its last send as one batch, and takes the work off the task's path.
    It sends at most once per interval: the first event after a quiet spell goes at once, and a busy
    process's events are gathered while it waits. It starts on first use in each process, so it
    survives the prefork pool's fork.
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
        interval = getattr(settings, "CHORDFLOW_BROADCAST_INTERVAL", 0.25)
        last_send = float("-inf")
        while True:
            batch = self._queue.get()
            wait = last_send + interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            last_send = time.monotonic()
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
