"""Plug points for steps the engine does not run itself: other apps register handlers here.

The approvals app registers the "approval" step type and the escalation of failed steps from its
AppConfig.ready(), so that dependencies keep pointing one way (approvals -> executions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class StepTypeHandler(Protocol):
    def __call__(self, *, run: Any, step: Any, step_run_id: int, params: Any) -> None:
        """Called in the advancing transaction once the step is `waiting`; record what it waits for."""


class EscalationHandler(Protocol):
    def __call__(self, *, run_id: Any, step: Any, step_run_id: int, error_type: str, message: str) -> None:
        """Called in the failing transaction once the step is `waiting` for an operator."""


_handlers: dict[str, StepTypeHandler] = {}
_escalation: list[EscalationHandler] = []


def register(step_type: str, handler: StepTypeHandler) -> None:
    _handlers[step_type] = handler


def handler_for(step_type: str) -> StepTypeHandler:
    try:
        return _handlers[step_type]
    except KeyError:
        raise LookupError(f"no handler for steps of type {step_type!r}: is its app installed?") from None


def register_escalation(handler: EscalationHandler) -> None:
    _escalation[:] = [handler]


def escalation_handler() -> Callable[..., None] | None:
    return _escalation[0] if _escalation else None
