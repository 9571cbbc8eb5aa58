"""Secrets: `{{ secret('PAYMENT_API_KEY') }}` in a step's params, resolved only when its action runs.

Planning a step puts a reference in its input, never the value: `⟪secret:PAYMENT_API_KEY:3f9a…⟫`,
signed with SECRET_KEY for that run, so an input (or a copy from another run) cannot forge one. The
worker reveals the references the step's own definition names, from the environment variable
`CHORDFLOW_SECRET_<NAME>`, just before the action is called, and redacts the values from whatever
the attempt leaves behind (output, error message, traceback) before it is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from workflows.exceptions import PermanentError

NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,99}$")
ENV_PREFIX = "CHORDFLOW_SECRET_"
_REFERENCE = re.compile(r"⟪secret:([A-Z][A-Z0-9_]{0,99}):([0-9a-f]{24})⟫")
SHORTEST_REDACTED = 4  # a value shorter than this is not searched for in what an attempt leaves


def _signature(run_id: str, name: str) -> str:
    digest = hmac.new(settings.SECRET_KEY.encode(), f"secret:{run_id}:{name}".encode(), hashlib.sha256)
    return digest.hexdigest()[:24]


def reference(run_id: str, name: str) -> str:
    """What `secret(name)` evaluates to in a plan: a signed reference, not the value."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"secret names are upper-case letters, digits and _ (got {name!r})")
    return f"⟪secret:{name}:{_signature(run_id, name)}⟫"


def placeholder(name: str) -> str:
    """How a secret shows wherever its value would have been."""
    return f"⟪secret:{name}⟫"


def value_of(name: str) -> str:
    value = os.environ.get(ENV_PREFIX + name)
    if value is None:
        raise PermanentError(f"secret {name} is not set: set {ENV_PREFIX}{name} in the worker's environment")
    return value


def reveal(value: Any, *, run_id: str, allowed: Iterable[str], revealed: dict[str, str]) -> Any:
    """`value` with every valid reference to an allowed secret replaced by the secret's value.

    A reference that is forged, from another run, or to a secret the step's definition does not
    name stays as it is. `revealed` collects name -> value, for redact().
    """
    allowed = frozenset(allowed)
    if not allowed:
        return value

    def substitute(match: re.Match) -> str:
        name, signature = match.group(1), match.group(2)
        if name not in allowed or not hmac.compare_digest(signature, _signature(run_id, name)):
            return match.group(0)
        revealed[name] = value_of(name)
        return revealed[name]

    return _map_strings(value, lambda text: _REFERENCE.sub(substitute, text) if "⟪secret:" in text else text)


def redact(value: Any, revealed: dict[str, str]) -> Any:
    """`value` with every revealed secret's value replaced by its placeholder."""
    pairs = sorted(
        ((secret, placeholder(name)) for name, secret in revealed.items() if len(secret) >= SHORTEST_REDACTED),
        key=lambda pair: -len(pair[0]),
    )
    if not pairs:
        return value

    def scrub(text: str) -> str:
        for secret, shown in pairs:
            text = text.replace(secret, shown)
        return text

    return _map_strings(value, scrub)


def _map_strings(value: Any, fn) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [_map_strings(item, fn) for item in value]
    if isinstance(value, dict):
        return {fn(key) if isinstance(key, str) else key: _map_strings(item, fn) for key, item in value.items()}
    return value
