"""Run events: appended to RunEvent, then handed after commit to the listeners registered here.

Services record events inside `event_batch()`: the batch is written with one bulk insert when the
outermost batch closes, and its payloads reach every listener once, in order, after the transaction
commits (never for a transaction that rolls back). The Channels broadcast is one such listener;
metrics and the live page subscribe the same way, from their AppConfig.ready().
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from django.utils import timezone

from executions.models import RunEvent

logger = logging.getLogger(__name__)

Listener = Callable[[Sequence[dict]], None]
_listeners: list[Listener] = []
_current: contextvars.ContextVar[list[RunEvent] | None] = contextvars.ContextVar("chordflow_events", default=None)


def subscribe(listener: Listener) -> None:
    """Call `listener(payloads)` with each committed batch of events; once per listener."""
    if listener not in _listeners:
        _listeners.append(listener)


def unsubscribe(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def record(
    run_id: Any,
    kind: str,
    *,
    step: str = "",
    branch: int | None = None,
    message: str = "",
    **data: Any,
) -> None:
    event = RunEvent(run_id=run_id, step_id=step, branch_index=branch, kind=kind, message=message, data=data)
    event.created_at = timezone.now()
    batch = _current.get()
    if batch is not None:
        batch.append(event)
    else:
        _save([event])


@contextmanager
def event_batch() -> Iterator[None]:
    """Collect the events recorded inside; write them and schedule their delivery on a clean exit."""
    if _current.get() is not None:  # nested: the outermost batch saves
        yield
        return
    batch: list[RunEvent] = []
    token = _current.set(batch)
    try:
        yield
    finally:
        _current.reset(token)
    if batch:
        _save(batch)


def _save(events: list[RunEvent]) -> None:
    RunEvent.objects.bulk_create(events)
    if _listeners:
        payloads = [payload(event) for event in events]
        transaction.on_commit(lambda: deliver(payloads))


def deliver(payloads: Sequence[dict]) -> None:
    """Hand a committed batch to every listener; one that raises is logged and does not stop the others."""
    for listener in list(_listeners):
        try:
            listener(payloads)
        except Exception:
            logger.exception("run event listener %r failed on %d events", listener, len(payloads))


def payload(event: RunEvent) -> dict:
    body = {
        "id": event.pk,  # order and de-duplicate by it: batches from several processes may interleave
        "type": event.kind,
        "run": str(event.run_id),
        "step": event.step_id or None,
        "branch": event.branch_index,
        "at": event.created_at.isoformat(),
        **event.data,
    }
    if event.message:
        body["message"] = event.message
    return body
