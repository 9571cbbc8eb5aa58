"""Errors the run services raise for the REST layer and the admin to turn into 4xx answers."""

from workflows.exceptions import ProblemsError


class ExecutionError(Exception):
    """Base of the runtime's own errors."""


class InvalidTransitionError(ExecutionError):
    """The run's or step's status does not allow the action (e.g. cancelling a finished run)."""


class RunNotAllowedError(ExecutionError):
    """A run cannot be started (inactive workflow, no version)."""


class ScheduleError(ProblemsError):
    """A schedule's fields, a backfill range or a trigger that cannot be used: every problem, with its field."""

    summary = "invalid schedule"
