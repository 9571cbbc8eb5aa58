"""Every transition is a RunEvent row and, after commit, a message on the run's Channels groups."""

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer

from executions.broadcast import ALL_RUNS_GROUP, run_group
from executions.models import RunEvent
from executions.services import run_start
from tests.support.runs import steps, wait_for_run, workflow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


async def drain(layer, channel: str) -> list[dict]:
    messages = []
    while True:
        try:
            messages.extend((await asyncio.wait_for(layer.receive(channel), timeout=1))["events"])
        except TimeoutError:
            return messages


def test_events_reach_the_run_group_and_run_level_events_the_all_runs_group_in_order():
    wf = workflow(steps({"id": "fetch", "action": "echo"}, {"id": "after", "action": "echo", "depends_on": ["fetch"]}))

    async def scenario():
        # One event loop for every layer call: a receiving channel belongs to the loop that reads it.
        layer = get_channel_layer()
        everything = await layer.new_channel()
        await layer.group_add(ALL_RUNS_GROUP, everything)
        run, _ = await sync_to_async(run_start)(workflow=wf)
        this_run = await layer.new_channel()
        await layer.group_add(run_group(run.pk), this_run)
        await sync_to_async(wait_for_run)(run.pk)
        return run, await drain(layer, everything), await drain(layer, this_run)

    run, everything, this_run = async_to_sync(scenario)()
    recorded = list(RunEvent.objects.filter(run=run).order_by("id").values_list("id", "kind"))
    # The all-runs group gets the run-level events: every one once.
    overview = sorted((event for event in everything if event["run"] == str(run.pk)), key=lambda e: e["id"])
    assert [(e["id"], e["type"]) for e in overview] == [(pk, kind) for pk, kind in recorded if kind.startswith("run.")]
    # The run's group gets every event once; processes publish after their own commits, so ids give the order.
    published = sorted(this_run, key=lambda e: e["id"])
    since_joined = [(pk, kind) for pk, kind in recorded if pk >= published[0]["id"]]
    assert [(e["id"], e["type"]) for e in published] == since_joined
    succeeded = next(e for e in published if e["type"] == "step.succeeded" and e["step"] == "fetch")
    assert succeeded["branch"] is None and succeeded["status"] == "succeeded" and succeeded["attempt"] == 1
    assert succeeded["at"]
    assert {"run.started", "step.queued", "step.started", "step.succeeded", "run.succeeded"} <= {k for _, k in recorded}
    # Joined after the start: it still sees the later events of this run.
    assert max(this_run, key=lambda e: e["id"])["type"] == "run.succeeded"
