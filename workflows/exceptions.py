"""Errors that workflow definitions, expressions and actions raise, each saying what and where."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a definition or an input: `path` is where (`steps[2].depends_on[0]`)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def as_dict(self) -> dict:
        return {"path": self.path, "message": self.message}


class ProblemsError(Exception):
    """Carries every problem found, so a user fixes them all in one round."""

    summary = "invalid"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(f"{self.summary}: " + "; ".join(str(p) for p in self.problems))


class DefinitionError(ProblemsError):
    summary = "invalid workflow definition"


class InputValidationError(ProblemsError):
    summary = "run input does not match the workflow's input_schema"


class ExpressionError(Exception):
    """An expression that does not parse, or fails when evaluated."""


class ActionError(Exception):
    """Base of the errors an action raises on purpose."""


class RetryableError(ActionError):
    """A transient failure: the step is retried under its retry policy.

    `retry_after` (seconds), when given, is the least delay before the next attempt (HTTP Retry-After).
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ActionError):
    """A failure that another attempt cannot fix: the step fails at once, without retry."""


class AttemptCancelled(PermanentError):
    """The action stopped because its step was cancelled (context.cancelled()); nothing is recorded."""


class UnknownActionError(PermanentError):
    """The step names an action that no module registered."""


class DestinationNotAllowedError(PermanentError):
    """The http action was asked to connect where the destination settings forbid."""
