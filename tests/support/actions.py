"""Actions only the tests register (WORKFLOWS_ACTION_MODULES in the test settings)."""

import logging
import os
import signal
import time

import redis

from workflows.actions import action
from workflows.exceptions import AttemptCancelled, PermanentError, RetryableError

_redis = None


def counter() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ["REDIS_URL"])
    return _redis


def executions_key(run_id: str, step_id: str, branch: int | None = None) -> str:
    return f"test:executions:{run_id}:{step_id}" + ("" if branch is None else f":{branch}")


@action("test.record")
def record(params, context):
    """Counts every execution in Redis (shared by all processes), then echoes its params."""
    counter().incr(executions_key(context.run_id, context.step_id))
    counter().rpush(f"test:attempt-times:{context.run_id}:{context.step_id}", time.time())
    return params


@action("test.flaky")
def flaky(params, context):
    """Fails with a retryable error until attempt `succeed_on`; records each attempt's start time."""
    counter().rpush(f"test:attempt-times:{context.run_id}:{context.step_id}", time.time())
    if context.attempt < params["succeed_on"]:
        raise RetryableError(f"attempt {context.attempt} failed on purpose")
    return {"attempt": context.attempt}


@action("test.crash")
def crash(params, context):
    raise ZeroDivisionError("division by zero, on purpose")


@action("test.permanent")
def permanent(params, context):
    raise PermanentError("this can never work")


@action("test.sleep_then_record")
def sleep_then_record(params, context):
    """Sleeps, then counts a finished execution of this step or branch."""
    time.sleep(params["seconds"])
    counter().incr(executions_key(context.run_id, context.step_id, context.branch_index))
    return {"slept": params["seconds"], "attempt": context.attempt}


@action("test.context")
def context_action(params, context):
    return {
        "run_id": context.run_id,
        "step_id": context.step_id,
        "attempt": context.attempt,
        "branch_index": context.branch_index,
        "item": context.item,
        "idempotency_key": context.idempotency_key,
    }


@action("test.big_output")
def big_output(params, context):
    """An output of `bytes` characters: past the output limit when asked to be."""
    return {"blob": "x" * params["bytes"]}


@action("test.nul_output")
def nul_output(params, context):
    return {"text": "before\x00after"}


@action("test.leak")
def leak(params, context):
    """Echoes what it was given and fails when asked, quoting its params: as careless actions do."""
    if params.get("fail"):
        raise RuntimeError(f"could not call with {params}")
    return params


def started_key(run_id: str, step_id: str) -> str:
    return f"test:started:{run_id}:{step_id}"


def answers_key(run_id: str, step_id: str) -> str:
    return f"test:cancelled-answers:{run_id}:{step_id}"


@action("test.ignore_cancel")
def ignore_cancel(params, context):
    """Counts its start, naps for `seconds` without ever asking context.cancelled(), then counts an execution.
    With `ignore_sigterm`, its process ignores SIGTERM too (as an action that installs its own handler)."""
    if params.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    counter().incr(started_key(context.run_id, context.step_id))
    deadline = time.monotonic() + params["seconds"]
    while time.monotonic() < deadline:
        time.sleep(0.1)
    counter().incr(executions_key(context.run_id, context.step_id))
    return {"slept": params["seconds"]}


@action("test.until_cancelled")
def until_cancelled(params, context):
    """Asks context.cancelled() until it is true (for at most `seconds`); pushes its first and last answers."""
    key = answers_key(context.run_id, context.step_id)
    counter().rpush(key, int(context.cancelled()))
    deadline = time.monotonic() + params["seconds"]
    while time.monotonic() < deadline:
        if context.cancelled():
            counter().rpush(key, 1)
            return {"cancelled": True}
        time.sleep(0.05)
    return {"cancelled": False}


@action("test.superseded")
def superseded(params, context):
    """While it runs, its row moves on to the next attempt (a sweep re-queued it and another worker claimed
    it), then it ends as `params["end"]` says: its outcome is stale and must change nothing."""
    from django.db.models import F

    from executions.models import StepRun

    StepRun.objects.filter(run_id=context.run_id, step_id=context.step_id, branch_index=context.branch_index).update(
        attempts=F("attempts") + 1
    )
    if params["end"] == "fail":
        raise PermanentError("a stale attempt's failure")
    if params["end"] == "retry":
        raise RetryableError("a stale attempt's retry")
    return {"stale": True}


@action("test.log")
def log_lines(params, context):
    """Logs `lines` ({level, message, args, extra}), then `repeat` numbered info lines, then a line through
    Python's logging when `python_log` is set; then waits for `wait_key` in Redis (stopping once cancelled),
    logs one more line and hangs for `then_hang` seconds (marking `<wait_key>:hanging`), and raises `raise`
    as a ValueError, or returns what it logged."""
    for line in params.get("lines", []):
        getattr(context.log, line["level"])(line["message"], *line.get("args", []), extra=line.get("extra"))
    repeat = params.get("repeat", 0)
    for number in range(1, repeat + 1):
        context.log.info("line %d of %d", number, repeat)
    if params.get("python_log"):
        logging.getLogger("tests.actions").warning(params["python_log"])
    if params.get("wait_key"):
        deadline = time.monotonic() + 30
        while not counter().exists(params["wait_key"]) and time.monotonic() < deadline:
            if context.cancelled():
                raise AttemptCancelled("stopped waiting")
            time.sleep(0.05)
        context.log.info("done waiting")
    if params.get("then_hang"):  # a line still in the buffer, then no log call nor cancelled() question
        context.log.info("never written")
        counter().set(f"{params['wait_key']}:hanging", 1)
        time.sleep(params["then_hang"])
    if params.get("raise"):
        raise ValueError(params["raise"])
    return {"logged": len(params.get("lines", [])) + repeat}


@action("test.by_item")
def by_item(params, context):
    """Counts each run of a branch; its first attempt fails (retryable) when the item is in `flaky`,
    every attempt fails for good when it is in `doomed`; otherwise returns the item."""
    counter().incr(executions_key(context.run_id, context.step_id, context.branch_index))
    if context.item in params.get("doomed", []):
        raise PermanentError(f"item {context.item} can never work")
    if context.item in params.get("flaky", []) and context.attempt == 1:
        raise RetryableError(f"item {context.item} fails its first attempt")
    return {"item": context.item, "attempt": context.attempt}
