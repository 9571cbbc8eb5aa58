"""The benchmark's own action (the worker imports it with -I): Chordflow's side of raw_tasks.sleep."""

import time

from workflows.actions import action


@action("bench.sleep")
def sleep(params, context):
    """An I/O-bound branch: waits `seconds` (a call to a slow service)."""
    time.sleep(float(params["seconds"]))
    return {"slept": params["seconds"]}
