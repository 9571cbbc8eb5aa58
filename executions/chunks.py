"""A chunk of for_each branches in one task: claimed with one statement, run one after another, their
successes recorded together with one statement and one count on their step.

Each branch keeps what a branch in a task of its own has: its attempt, events, log, time limits,
retries and failure. A branch that fails is recorded at once, alone, and retries in a task of its
own; the others go on. So a chunk costs about five statements and one message, whatever its size,
where a branch alone costs six statements and a message.

What stays true when a chunk's worker dies mid-way (kill -9, the OOM killer):
- a success is recorded at most CHORDFLOW_CHUNK_FLUSH seconds after its action returned, and never
  run again: the claim's guard refuses it to any later delivery;
- a claimed branch the chunk did not reach, or did not record, is an attempt whose worker died: the
  sweep finds it past its timeout plus CHORDFLOW_TIMEOUT_GRACE and retries it, as for any step. The
  deadline counts from the row's `started_at`, so the chunk stamps the branches still ahead of it
  again whenever half the grace has passed: a branch starts within grace/2 of its stamp, and runs at
  most its timeout, so the sweep never takes a branch the chunk is running or will still run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from executions import attempts, cancellation, events, transitions
from executions.branches import branch_finished
from executions.models import StepRun
from executions.selectors import run_facts
from executions.states import StepStatus
from workflows.services import version_spec_by_id
from workflows.spec import StepSpec

logger = logging.getLogger(__name__)
ATTEMPT = 1  # a chunk carries first attempts only; a retry travels alone


def chunk_execute(*, parent_id: int, step_run_ids: list[int]) -> int:
    """Claim the chunk's branches still queued and run them. Returns how many it claimed (0 for a
    duplicate delivery: its branches were claimed by the first)."""
    with transaction.atomic(), events.event_batch():
        rows = transitions.steps_claim(step_run_ids=step_run_ids, attempt=ATTEMPT, now=timezone.now())
    rows = [row for row in rows if row.parent_id == parent_id]
    if not rows:
        logger.info("chunk of step run %s: its branches were claimed already or are moot", parent_id)
        return 0
    facts = run_facts(rows[0].run_id)
    step = version_spec_by_id(facts.version_id, facts.content_hash).step(rows[0].step_id)
    _Chunk(rows, step=step, workflow=facts.workflow, parent_id=parent_id).run()
    return len(rows)


@dataclass
class _Done:
    row: StepRun
    output: Any
    write_log: Callable[[], None]


class _Chunk:
    def __init__(self, rows: list[StepRun], *, step: StepSpec, workflow: str, parent_id: int) -> None:
        self.rows, self.step, self.workflow, self.parent_id = rows, step, workflow, parent_id
        self.run_id = rows[0].run_id
        self.owned = {row.pk for row in rows}  # claimed by this chunk and still running its attempt
        self.pending: list[_Done] = []  # succeeded, not recorded yet
        self.stamped = self.flushed = self.flag_seen = time.monotonic()

    def run(self) -> None:
        for index, row in enumerate(self.rows):
            self._keep_up(self.rows[index:])
            if row.pk not in self.owned:
                continue  # cancelled, or taken by the sweep, meanwhile
            self._one(row)
        self._flush()

    def _keep_up(self, ahead: list[StepRun]) -> None:
        """Before a branch starts: stamp the branches ahead again, record what succeeded when it is
        time, and drop what a cancel took."""
        now = time.monotonic()
        if now - self.stamped > settings.CHORDFLOW_TIMEOUT_GRACE / 2:
            self._flush(restamp=[row.pk for row in ahead if row.pk in self.owned])
        elif self.pending and now - self.flushed >= settings.CHORDFLOW_CHUNK_FLUSH:
            self._flush()
        if now - self.flag_seen >= cancellation.PROBE_INTERVAL_SECONDS:
            self.flag_seen = now
            if cancellation.run_flagged(self.run_id):
                ids = [row.pk for row in ahead if row.pk in self.owned]
                live = StepRun.objects.filter(pk__in=ids, status=StepStatus.RUNNING, attempts=ATTEMPT)
                self.owned -= set(ids) - set(live.values_list("pk", flat=True))

    def _one(self, row: StepRun) -> None:
        row.started_at = timezone.now()
        outcome = attempts.attempt_in_task(row, step=self.step, workflow=self.workflow)
        if outcome.stopped:
            outcome.write_log()
        elif outcome.failure is None:
            self.pending.append(_Done(row, outcome.output, outcome.write_log))
        else:  # recorded at once, as a branch alone would be; the successes before it first
            self._flush()
            if attempts.failed_in_task(row, step=self.step, outcome=outcome):
                self.flag_seen = 0.0  # it may have failed for good, cancelling its siblings: look first
            self.owned.discard(row.pk)

    def _flush(self, restamp: list[int] | None = None) -> None:
        """Record the pending successes in one transaction: one UPDATE, their events, one count (and the
        join, for the last). With `restamp`, the branches still ahead get a new start in it too."""
        done, self.pending = self.pending, []
        self.flushed = time.monotonic()
        if restamp:
            self.stamped = self.flushed
        if not done and not restamp:
            return

        def record() -> set[int] | None:
            now = timezone.now()
            moved = []
            if done:
                outputs = {item.row.pk: item.output for item in done}
                moved = transitions.steps_succeed([item.row for item in done], outputs=outputs, now=now)
            kept = transitions.steps_restamp(step_run_ids=restamp, attempt=ATTEMPT, now=now) if restamp else None
            if moved:
                branch_finished(self.parent_id, len(moved))
            for item in done:  # after the outcome's row locks (see attempts.logged)
                item.write_log()
            return kept

        kept = attempts.recorded(record)
        for item in done:
            self.owned.discard(item.row.pk)
        if kept is not None:
            self.owned -= set(restamp) - kept
