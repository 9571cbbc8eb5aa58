"""Flower's Broker page and `/api/queues/length` for Chordflow: every queue on our Redis, with its depth.

Flower 2.2 asks Redis for the length of the queues its workers reported (`inspect().active_queues()`,
asked when Flower starts), or of `task_default_queue` when none reported. A queue that a step names
and no worker consumes, the one whose depth grows, would be missing. Kombu records every queue a
message was published to (and every queue a worker consumes) in a `_kombu.binding.<exchange>` set;
Celery gives each queue an exchange of its own name, so those sets name every task queue.

Finding them is a SCAN of the keyspace in steps of 1,000 keys (so Redis never pauses long for it): about
0.3 s per 500,000 keys, once per Broker page or API call.
"""

from __future__ import annotations

import logging

from flower.utils.broker import RedisBase
from redis.exceptions import RedisError

BINDINGS = "_kombu.binding."
logger = logging.getLogger(__name__)


async def declared_queues(client, *, prefix: str = "", sep: str = RedisBase.DEFAULT_SEP) -> set[str]:
    """Celery's task queues on this Redis (not the control and event queues: their exchange is shared)."""
    queues = set()
    async for key in client.scan_iter(match=f"{prefix}{BINDINGS}*", count=1000):
        exchange = key.decode(errors="replace")[len(prefix) + len(BINDINGS) :]
        for member in await client.smembers(key):
            queue = member.decode(errors="replace").rpartition(sep)[2]
            if queue == exchange:
                queues.add(queue)
    return queues


def list_every_declared_queue() -> None:
    """Make Flower's Redis brokers also count the queues no worker reported."""
    reported = RedisBase.queues
    if getattr(reported, "lists_declared_queues", False):
        return

    async def queues(self, names):
        try:
            declared = await declared_queues(self.redis, prefix=self.broker_prefix, sep=self.sep)
        except RedisError as exc:  # Flower's own call below reports the broker's failure
            logger.warning("Could not list the queues on the broker: %s", exc)
            declared = set()
        return await reported(self, sorted({*names, *declared}))

    queues.lists_declared_queues = True
    RedisBase.queues = queues
