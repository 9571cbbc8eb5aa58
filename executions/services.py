"""The runtime's public writes, for interfaces (REST, admin, commands, other apps) to call.

The work is split by role: `runs` (start, cancel, retry), `advance` (plan then apply), `resolve`
(steps that end outside a task), `branches` (for_each), `attempts` (one attempt on a worker), and
`transitions`, the one gate every status write passes.
"""

from executions.advance import run_advance
from executions.branches import fan_out_publish
from executions.resolve import step_resolve
from executions.runs import run_cancel, run_fail, run_retry, run_start

__all__ = [
    "fan_out_publish",
    "run_advance",
    "run_cancel",
    "run_fail",
    "run_retry",
    "run_start",
    "step_resolve",
]
