"""Step rate limits, global across workers and hosts: GCRA on Redis, with reserved slots.

A step with `rate_limit: {limit, per, key}` may start at most `limit` times (per key value) in any
`per` seconds. Each attempt about to start asks Redis, in one Lua script, for the next free slot of
its bucket: slots are `(per + slack) / limit` seconds apart, so no window of `per` seconds ever holds
more than `limit` starts even when a task starts up to `slack` late (the slack is 10% of `per`, at
most 100 ms, at least 2%: a limit of 50 a second gives slots 22 ms apart). Slots come from Redis'
clock; whether a released task is late is judged by the workers' clocks, which must agree to well
within the slack (NTP keeps them within milliseconds).

An attempt whose slot is now starts. One whose slot is later is parked: its row keeps the slot time
(`next_retry_at`) and its message is acknowledged, so it holds no worker process and no broker
message. A release task, one per step bucket and re-scheduling itself, publishes the attempts whose
slot falls within the next second, each with the few milliseconds' countdown to its slot; they start
without asking again, unless they start later than their slot plus the slack (every worker process
was busy): then they ask for a new slot, so a backlog never turns into a burst. If a release is lost
(Redis restarted), the sweep re-publishes a parked row once it is overdue, and it asks for a new slot.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config.celery_app import app
from executions import events
from executions.dispatch import RATE_RELEASE, new_task_id, step_signature
from executions.models import StepRun
from executions.selectors import run_facts
from executions.states import StepStatus
from workflows import expressions
from workflows.exceptions import ExpressionError
from workflows.services import version_spec_by_id
from workflows.spec import RateLimit, StepSpec

THROTTLED_EVENT = "step.throttled"  # an attempt parked until its rate-limit slot

logger = logging.getLogger(__name__)

HORIZON_SECONDS = 1.0  # a release publishes the slots due within this, each with its countdown
RELEASE_BATCH = 2000

# KEYS[1]: the bucket's theoretical arrival time (ms). ARGV[1]: the slot spacing (ms).
# Returns the ms from now to this request's slot (0: now), reserving it.
_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local spacing = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, tat)
redis.call('SET', KEYS[1], slot + spacing, 'PX', math.ceil(slot + spacing - now) + 60000)
return slot - now
"""

_client: redis.Redis | None = None
_script = None


def _redis() -> redis.Redis:
    global _client, _script
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
        _script = _client.register_script(_GCRA)
    return _client


def bucket(workflow: str, step: StepSpec, params: Any, item: Any, index: int | None) -> str:
    """The Redis key of the step's bucket: its workflow and step, and its key's value for this attempt."""
    value = ""
    if step.rate_limit.key is not None:
        try:
            value = expressions.evaluate(step.rate_limit.key, {"params": params, "item": item, "index": index})
        except ExpressionError as exc:
            logger.warning("rate_limit.key of step %s failed (%s): the step's own bucket is used", step.id, exc)
            value = ""
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"chordflow:rate:{workflow}:{step.id}:{digest}"


def slack(limit: RateLimit) -> float:
    """How late a start may be without breaking the limit: slots are this much more than per/limit apart."""
    return max(0.02 * limit.per, min(0.1, 0.1 * limit.per))


def reserve(key: str, limit: RateLimit) -> float:
    """Seconds until this attempt's slot (0: it may start now); the slot is reserved either way."""
    _redis()
    spacing_ms = max(1, round((limit.per + slack(limit)) * 1000 / limit.limit))
    return int(_script(keys=[key], args=[spacing_ms])) / 1000


def admit(*, step_run_id: int, attempt: int) -> bool:
    """Before an attempt of a rate-limited step starts: True to start now, False when it was parked."""
    row = (
        StepRun.objects.filter(pk=step_run_id, status__in=(StepStatus.QUEUED, StepStatus.RETRYING))
        .values("run_id", "step_id", "input", "item", "branch_index", "status")
        .first()
    )
    if row is None:
        return True  # the claim decides (a duplicate, a cancel)
    facts = run_facts(row["run_id"])
    step = version_spec_by_id(facts.version_id, facts.content_hash).step(row["step_id"])
    if step.rate_limit is None:
        return True
    key = bucket(facts.workflow, step, row["input"], row["item"], row["branch_index"])
    try:
        wait = reserve(key, step.rate_limit)
    except redis.RedisError:
        logger.warning("rate limit of step %s: Redis did not answer; starting unthrottled", step.id, exc_info=True)
        return True
    if wait <= 0:
        return True
    slot = timezone.now() + timedelta(seconds=wait)
    with transaction.atomic():
        if StepRun.objects.filter(pk=step_run_id, status__in=(StepStatus.QUEUED, StepStatus.RETRYING)).update(
            next_retry_at=slot, task_id=""
        ):  # its event counts it (chordflow_step_throttled_total); a park is not an attempt
            events.record(
                row["run_id"], THROTTLED_EVENT, step=row["step_id"], branch=row["branch_index"], attempt=attempt,
                status=row["status"], wait=round(wait, 3),
            )  # fmt: skip
    schedule_release(step_id=row["step_id"], run_id=row["run_id"], wait=wait)
    return False


# KEYS[1]: when the step's next release is due (ms, Redis time). ARGV[1]: ms from now to this one's.
# Returns 1 when this release is earlier than the one already due (or none is): send it.
_EARLIER = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local due = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current > now and current <= due + 50 then
  return 0
end
redis.call('SET', KEYS[1], due, 'PX', tonumber(ARGV[1]) + 60000)
return 1
"""
_earlier = None


def schedule_release(*, step_id: str, run_id: Any, wait: float) -> None:
    """Make sure a release runs in time for a slot `wait` seconds away: send one unless an earlier (or
    as early) release is already due. Extra releases are harmless; each publishes only what is due."""
    global _earlier
    if _earlier is None:
        _earlier = _redis().register_script(_EARLIER)
    countdown = max(0.0, wait - HORIZON_SECONDS / 2)
    if _earlier(keys=[f"chordflow:rate-release:{run_id}:{step_id}"], args=[int(countdown * 1000)]):
        app.signature(RATE_RELEASE, args=(str(run_id), step_id)).apply_async(countdown=countdown, ignore_result=True)


def release(*, run_id: str, step_id: str) -> int:
    """Publish the parked attempts of this step whose slots fall within the horizon, each to start at
    its slot without asking again; then come back for the rest."""
    _redis().delete(f"chordflow:rate-release:{run_id}:{step_id}")  # the next park or the end schedules anew
    now = timezone.now()
    parked = StepRun.objects.filter(
        run_id=run_id, step_id=step_id, task_id="", next_retry_at__isnull=False,
        status__in=(StepStatus.QUEUED, StepStatus.RETRYING),
    ).order_by("next_retry_at")  # fmt: skip
    facts = run_facts(run_id)
    step = version_spec_by_id(facts.version_id, facts.content_hash).step(step_id)
    published = 0
    for row in parked.filter(next_retry_at__lte=now + timedelta(seconds=HORIZON_SECONDS))[:RELEASE_BATCH]:
        task_id = new_task_id()
        if not StepRun.objects.filter(pk=row.pk, task_id="").update(task_id=task_id):
            continue
        # Started later than its slot plus the slack (every worker process busy), it would crowd the
        # next slots: then it asks for a new one instead (step_execute's `late_after`).
        late_after = row.next_retry_at.timestamp() + slack(step.rate_limit)
        signature = step_signature(
            step_run_id=row.pk, attempt=row.attempts + 1, step=step, task_id=task_id, run_id=run_id,
            branch=row.branch_index, late_after=late_after,
        )  # fmt: skip
        signature.apply_async(countdown=max(0.0, (row.next_retry_at - now).total_seconds()), ignore_result=True)
        published += 1
    following = parked.values_list("next_retry_at", flat=True).first()  # the rows still without a task
    if following is not None:
        schedule_release(step_id=step_id, run_id=run_id, wait=max(0.0, (following - now).total_seconds()))
    return published
