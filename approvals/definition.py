"""Validation of approval step params, registered with the definition validator."""

from __future__ import annotations

from typing import Any

from workflows.definition import people_problems
from workflows.exceptions import Problem

ON_TIMEOUT_CHOICES = ("reject", "approve", "escalate")
PARAM_KEYS = {"approvers", "message", "required", "timeout", "on_timeout", "escalate_to"}


def validate_approval_params(params: Any, path: str) -> list[Problem]:
    if not isinstance(params, dict):
        return [Problem(path, "must be an object with approvers")]
    problems = [
        Problem(f"{path}.{key}", f"unknown key (allowed: {', '.join(sorted(PARAM_KEYS))})")
        for key in params
        if key not in PARAM_KEYS
    ]
    if "approvers" not in params:
        problems.append(Problem(f"{path}.approvers", 'is required: {"users": [...], "groups": [...]}'))
    else:
        problems.extend(people_problems(params["approvers"], f"{path}.approvers"))
    if not isinstance(params.get("message", ""), str):
        problems.append(Problem(f"{path}.message", "must be a string (it may hold expressions)"))
    required = params.get("required", 1)
    if not isinstance(required, int) or isinstance(required, bool) or required < 1:
        problems.append(Problem(f"{path}.required", "must be a whole number >= 1"))
    timeout = params.get("timeout")
    if timeout is not None and (not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0):
        problems.append(Problem(f"{path}.timeout", "must be a number of seconds above 0"))
    on_timeout = params.get("on_timeout", "reject")
    if on_timeout not in ON_TIMEOUT_CHOICES:
        problems.append(Problem(f"{path}.on_timeout", f"must be one of: {', '.join(ON_TIMEOUT_CHOICES)}"))
    if on_timeout == "escalate":
        if "escalate_to" not in params:
            problems.append(Problem(f"{path}.escalate_to", "is required when on_timeout is escalate"))
        if timeout is None:
            problems.append(Problem(f"{path}.timeout", "is required when on_timeout is escalate"))
    if "escalate_to" in params:
        problems.extend(people_problems(params["escalate_to"], f"{path}.escalate_to"))
    return problems
