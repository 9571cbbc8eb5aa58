"""Secrets: `{{ secret('PAYMENT_API_KEY') }}` in a step's params, resolved only when its action runs.

Planning a step puts a reference in its input, never the value: `⟪secret:PAYMENT_API_KEY:3f9a…⟫`,
signed with SECRET_KEY for that run and step, so an input (or a copy from another run or step)
cannot forge one. Just before the action is called, the worker reveals the references found where
the step's own params call secret(), from the environment variable `CHORDFLOW_SECRET_<NAME>`; a
reference that data carried anywhere else stays as it is. Whatever the attempt leaves behind
(output, error message, traceback) has the values, and their URL-, JSON- and repr-escaped forms,
replaced by a placeholder before it is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from workflows.exceptions import PermanentError

NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,99}$")
ENV_PREFIX = "CHORDFLOW_SECRET_"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REFERENCE = re.compile(r"⟪secret:([A-Z][A-Z0-9_]{0,99}):([0-9a-f]{24})⟫")
SHORTEST_REDACTED = 4  # a value shorter than this is not searched for in what an attempt leaves


def _signature(run_id: str, step_id: str, name: str) -> str:
    message = f"secret:{run_id}:{step_id}:{name}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()[:24]


def reference(run_id: str, step_id: str, name: str) -> str:
    """What `secret(name)` evaluates to in a plan: a signed reference, not the value."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"secret names are upper-case letters, digits and _ (got {name!r})")
    return f"⟪secret:{name}:{_signature(run_id, step_id, name)}⟫"


def placeholder(name: str) -> str:
    """How a secret shows wherever its value would have been."""
    return f"⟪secret:{name}⟫"


def value_of(name: str) -> str:
    value = os.environ.get(ENV_PREFIX + name)
    if value is None:
        raise PermanentError(f"secret {name} is not set: set {ENV_PREFIX}{name} in the worker's environment")
    if _CONTROL.search(value):  # it would reach errors escaped, past the redaction
        raise PermanentError(f"secret {name} holds a line break or another control character: remove it")
    return value


def reveal(
    value: Any, *, template: Any, run_id: str, step_id: str, allowed: Iterable[str], revealed: dict[str, str]
) -> Any:
    """`value` (a step's resolved params) with the step's own secret references replaced by the values.

    Only where `template` (the step's params in its definition) calls secret(), and only references
    signed for this run and step to a secret the definition names. `revealed` collects name -> value.
    """
    allowed = frozenset(allowed)
    if not allowed:
        return value

    def substitute(match: re.Match) -> str:
        name, signature = match.group(1), match.group(2)
        if name not in allowed or not hmac.compare_digest(signature, _signature(run_id, step_id, name)):
            return match.group(0)
        revealed[name] = value_of(name)
        return revealed[name]

    def walk(value: Any, template: Any) -> Any:
        if isinstance(template, str):
            if "secret(" not in template:
                return value
            return _map_strings(value, lambda text: _REFERENCE.sub(substitute, text) if "⟪secret:" in text else text)
        if isinstance(template, dict) and isinstance(value, dict):
            return {key: walk(item, template[key]) if key in template else item for key, item in value.items()}
        if isinstance(template, list) and isinstance(value, list) and len(template) == len(value):
            return [walk(item, part) for item, part in zip(value, template, strict=True)]
        return value

    return walk(value, template)


def redact(value: Any, revealed: dict[str, str]) -> Any:
    """`value` with every revealed secret's value, as it is or escaped, replaced by its placeholder."""
    pairs = sorted(
        {
            (form, placeholder(name))
            for name, secret in revealed.items()
            for form in _forms(secret)
            if len(form) >= SHORTEST_REDACTED
        },
        key=lambda pair: -len(pair[0]),
    )
    if not pairs:
        return value

    def scrub(text: str) -> str:
        for secret, shown in pairs:
            text = text.replace(secret, shown)
        return text

    return _map_strings(value, scrub)


def _forms(secret: str) -> set[str]:
    """How a value shows up in URLs, JSON, reprs and messages."""
    return {
        secret,
        urllib.parse.quote(secret),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
    }


def _map_strings(value: Any, fn) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list | tuple):
        return [_map_strings(item, fn) for item in value]
    if isinstance(value, dict):
        return {fn(key) if isinstance(key, str) else key: _map_strings(item, fn) for key, item in value.items()}
    return value
