"""Stopping attempts whose step was cancelled: a flag per run, the probe behind context.cancelled(), a watchdog.

When steps are cancelled (the run is cancelled or fails, a failed branch cancels its siblings), after
commit: a Redis key marks the run, Celery's revoke drops the queued tasks, and `chordflow_terminate`
is broadcast to every worker, which terminates those tasks still running CHORDFLOW_CANCEL_GRACE
seconds later. An action that asks `context.cancelled()` in the meantime stops by itself.

Terminating acknowledges the message at once (Celery's revoke with terminate does), so the broker
does not deliver it again; should it be delivered again anyway (a worker that died before the ack
reached Redis), the step's row is cancelled and the claim refuses the attempt.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

import redis
from celery.worker import state as worker_state
from celery.worker.control import control_command
from django.conf import settings
from django.db import transaction

from config.celery_app import app
from executions.models import StepRun
from executions.states import StepStatus

logger = logging.getLogger(__name__)

TERMINATE_COMMAND = "chordflow_terminate"
TERMINATE_BATCH = 1000
# An action that catches SIGTERM gets this long to exit before SIGKILL.
KILL_AFTER_SECONDS = 2.0
# context.cancelled() asks Redis at most this often per attempt; between look-ups it repeats its answer.
PROBE_INTERVAL_SECONDS = 0.5
# A run's flag outlives any attempt that could still be running (the hard task time limit is 3660 s).
FLAG_TTL_SECONDS = 24 * 3600

_redis: redis.Redis | None = None


def flag_key(run_id: Any) -> str:
    return f"chordflow:cancelled:{run_id}"


def _client() -> redis.Redis:
    global _redis
    if _redis is None:  # redis-py's pool reconnects in a forked child by itself
        _redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _redis


def stop_on_commit(*, run_id: Any, task_ids: list[str]) -> None:
    """After commit: flag the run, and have every worker terminate `task_ids` still running after the grace."""
    if not task_ids:
        return

    def stop() -> None:
        try:
            _client().set(flag_key(run_id), 1, ex=FLAG_TTL_SECONDS)
        except redis.RedisError:
            logger.warning("could not flag run %s as cancelled in Redis", run_id, exc_info=True)
        grace = float(settings.CHORDFLOW_CANCEL_GRACE)
        try:
            for start in range(0, len(task_ids), TERMINATE_BATCH):
                arguments = {"task_ids": task_ids[start : start + TERMINATE_BATCH], "grace": grace}
                app.control.broadcast(TERMINATE_COMMAND, arguments=arguments)
        except Exception:
            logger.warning("could not ask the workers to terminate %d tasks", len(task_ids), exc_info=True)

    transaction.on_commit(stop)


def run_flagged(run_id: Any) -> bool:
    """Whether the run is flagged as having steps cancelled (one Redis GET); without Redis, yes: look at the rows."""
    try:
        return bool(_client().exists(flag_key(run_id)))
    except redis.RedisError:
        return True


class AttemptProbe:
    """`context.cancelled()` of one attempt: true once its row no longer runs this attempt.

    Cheap while nothing is cancelled: `run_flagged`, at most every PROBE_INTERVAL_SECONDS. Only when
    the run is flagged does it read the attempt's row (one primary-key look-up), since the flag covers
    the whole run and a branch's siblings or a retried step may still be live. Once true it stays true.
    """

    def __init__(self, *, run_id: Any, step_run_id: int, attempt: int) -> None:
        self.run_id, self.step_run_id, self.attempt = run_id, step_run_id, attempt
        self._answer = False
        self._next_look = 0.0

    def __call__(self) -> bool:
        if self._answer or time.monotonic() < self._next_look:
            return self._answer
        self._next_look = time.monotonic() + PROBE_INTERVAL_SECONDS
        if run_flagged(self.run_id):
            live = StepRun.objects.filter(pk=self.step_run_id, status=StepStatus.RUNNING, attempts=self.attempt)
            self._answer = not live.exists()
        return self._answer


# --- the watchdog, in each worker's main process ----------------------------------------------------
@control_command(args=[("task_ids", list), ("grace", float)], signature="<task_ids> <grace>")
def chordflow_terminate(state, task_ids: list[str], grace: float, **_kwargs) -> dict:
    """Terminate those of `task_ids` that still run `grace` seconds from now (SIGTERM, then SIGKILL).

    Runs on the worker's event loop, so it waits for no pool process: it works while all are busy.
    """
    ids = frozenset(task_ids)
    state.consumer.timer.call_after(grace, _terminate, (state, ids))
    return {"ok": f"{len(ids)} tasks terminate after {grace:g}s unless they end"}


def _running(ids: frozenset[str]) -> list:
    return [request for request in list(worker_state.active_requests) if request.id in ids and request.time_start]


def _terminate(state, ids: frozenset[str]) -> None:
    doomed = []
    for request in _running(ids):
        logger.warning("task %s ignored its cancellation for the grace: terminating it", request.id)
        # The pool's job for this task, taken before terminate(): terminating removes the request
        # from the worker's active requests, so only the job can say later whether it still runs.
        job = request._apply_result() if request._apply_result is not None else None
        pid = request.worker_pid
        try:
            request.terminate(state.consumer.pool, signal=signal.SIGTERM)
        except NotImplementedError:  # solo and threads pools cannot terminate a task
            logger.warning("the %s pool cannot terminate task %s", type(state.consumer.pool).__name__, request.id)
            return
        if job is not None and pid:
            doomed.append((request.id, pid, job))
    if doomed:
        state.consumer.timer.call_after(KILL_AFTER_SECONDS, _kill, (state, doomed))


def _kill(state, doomed: list) -> None:
    """SIGKILL the pool processes still running their task after SIGTERM (an action that handles it).

    Only while the pool's job for that task is unfinished and still on that process: a process that
    ended its task (and may run another one now) is left alone.
    """
    for task_id, pid, job in doomed:
        if job.ready() or pid not in job.worker_pids():
            continue
        logger.warning("task %s survived SIGTERM: killing pool process %s", task_id, pid)
        state.consumer.pool.terminate_job(pid, signal.SIGKILL)
