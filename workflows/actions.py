"""The action registry: `@action("shop.reserve")` makes a Python function usable as a step.

An action is called as `fn(params, context)` with the step's resolved params and an ActionContext,
and returns a JSON-serializable output. It may raise RetryableError (retried under the step's
policy), PermanentError (fails at once); any other exception is treated as retryable. A long action
asks `context.cancelled()` now and then, and stops (raising AttemptCancelled) once it is true. It
logs with `context.log.info("fetched %d rows", n, extra={...})` (workflows.action_log).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from workflows.action_log import ActionLog
from workflows.exceptions import UnknownActionError

ActionFunction = Callable[[Any, "ActionContext"], Any]

_registry: dict[str, ActionFunction] = {}


@dataclass(frozen=True)
class ActionContext:
    """What an action knows of the attempt it serves."""

    run_id: str
    workflow: str
    step_id: str
    attempt: int
    branch_index: int | None = None
    item: Any = None
    # Set by the engine for each attempt (executions.cancellation.AttemptProbe); None outside a worker.
    cancel_probe: Callable[[], bool] | None = field(default=None, repr=False, compare=False)
    # The attempt's log (the engine gives it a sink that writes to the database); in memory otherwise.
    log: ActionLog = field(default_factory=ActionLog, repr=False, compare=False)

    def cancelled(self) -> bool:
        """True once the step (or branch) was cancelled while this attempt runs: stop, the output is ignored.

        Cheap enough for a loop: it looks up at most twice a second and repeats its answer in between.
        An action that does not stop is terminated CHORDFLOW_CANCEL_GRACE seconds after the cancel.
        Asking also writes the attempt's buffered log lines when the last write is a second old.
        """
        self.log.flush_if_due()
        return self.cancel_probe is not None and self.cancel_probe()

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of one step (or branch) of one run: pass it to outside systems."""
        branch = "" if self.branch_index is None else f":{self.branch_index}"
        return f"{self.run_id}:{self.step_id}{branch}"


def action(name: str) -> Callable[[ActionFunction], ActionFunction]:
    """Register `fn` under `name`. Registering another function under a taken name is an error."""

    def register(fn: ActionFunction) -> ActionFunction:
        existing = _registry.get(name)
        if existing is not None and existing is not fn and _qualname(existing) != _qualname(fn):
            raise ValueError(f"action {name!r} is already registered by {_qualname(existing)}")
        _registry[name] = fn
        return fn

    return register


def _qualname(fn: Callable) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def get_action(name: str) -> ActionFunction:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownActionError(
            f"no action named {name!r} is registered (registered: {', '.join(sorted(_registry)) or 'none'}); "
            "add its module to WORKFLOWS_ACTION_MODULES"
        ) from None


def is_registered(name: str) -> bool:
    return name in _registry


def registered_actions() -> list[str]:
    return sorted(_registry)


def import_action_modules(modules: Iterable[str]) -> None:
    for module in modules:
        importlib.import_module(module)
