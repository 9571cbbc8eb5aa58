"""Raw Celery tasks for the benchmark's baseline: no-ops that record when they ran, in Redis."""

import os
import time

import redis
from celery import shared_task

_redis = None


def store() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ["REDIS_URL"])
    return _redis


@shared_task(name="bench.noop")
def noop(key: str, sent: float | None = None) -> None:
    """Record this task's start time (and, when given, how long it waited since it was sent)."""
    now = time.time()
    store().rpush(f"bench:{key}", now)
    if sent is not None:
        store().rpush(f"bench:{key}:latency", now - sent)


@shared_task(name="bench.sleep")
def sleep(key: str, seconds: float) -> None:
    """An I/O-bound task: waits `seconds` (a call to a slow service), then records that it ran."""
    time.sleep(seconds)
    store().rpush(f"bench:{key}", time.time())


@shared_task(name="bench.done")
def done(*_results, key: str) -> None:
    """A chain's or chord's last task: records when the whole shape finished."""
    store().set(f"bench:{key}:done", time.time())
