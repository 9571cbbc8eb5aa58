"""What one definition, input, expression or output may cost, and the check that a value is storable JSON.

The limits are settings (config/settings/base.py, docs/security.md); each is read when it is used,
so a test or a deployment can change it without a restart of the code that imported this module.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django.conf import settings

# JSON integers beyond 64 bits are refused: most clients (and JavaScript) cannot read them back.
INT_LIMIT = 2**63
# A lone surrogate cannot be encoded as UTF-8, and PostgreSQL refuses NUL in text and jsonb.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

DEFAULTS = {
    "CHORDFLOW_MAX_STEPS": 1000,
    "CHORDFLOW_MAX_JSON_DEPTH": 64,
    "CHORDFLOW_MAX_FOR_EACH": 100_000,
    "CHORDFLOW_MAX_OUTPUT_BYTES": 1024 * 1024,
    "CHORDFLOW_MAX_EXPRESSION_SIZE": 1024 * 1024,
    "CHORDFLOW_EXPRESSION_TIMEOUT": 1.0,
    "CHORDFLOW_MAX_FAN_OUT_BYTES": 64 * 1024 * 1024,
    "CHORDFLOW_START_INLINE_BRANCHES": 1000,
}


def limit(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


class UnstorableValue(ValueError):
    """A value that is not JSON the database and every client can hold; the message says what and where."""


def describe_bytes(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MiB"
    if count >= 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count} bytes"


def check_storable(value: Any, *, max_bytes: int, what: str = "the value", setting: str = "") -> int:
    """Raise UnstorableValue unless `value` is JSON within the depth and size limits; return its JSON size.

    JSON here means: objects with string keys, lists, strings without NUL or lone surrogates, finite
    numbers, integers that fit 64 bits, true, false, null. Tuples count as lists.
    """
    max_depth = limit("CHORDFLOW_MAX_JSON_DEPTH")
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    approximate = 0  # bytes at least: a value far over the limit is refused before it is all walked
    while stack:
        item, path, depth = stack.pop()
        approximate += len(item) + 2 if isinstance(item, str) else 2
        if approximate > max_bytes:
            named = f" ({setting})" if setting else ""
            raise UnstorableValue(f"{what} is over the limit of {describe_bytes(max_bytes)}{named}")
        if depth > max_depth:
            raise UnstorableValue(
                f"{what} nests deeper than {max_depth} levels at {path or 'its top'} (CHORDFLOW_MAX_JSON_DEPTH)"
            )
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                raise UnstorableValue(f"{what} holds a NUL character or a lone surrogate at {path or 'its top'}")
        elif isinstance(item, int):
            if not -INT_LIMIT <= item < INT_LIMIT:
                raise UnstorableValue(f"{what} holds an integer beyond 64 bits at {path or 'its top'}")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise UnstorableValue(f"{what} holds {item!r} at {path or 'its top'}, which JSON cannot carry")
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise UnstorableValue(f"{what} has a key {key!r} that is not a string at {path or 'its top'}")
                if _UNSTORABLE.search(key):
                    raise UnstorableValue(f"{what} has a key with a NUL character or a lone surrogate at {path}")
                stack.append((child, f"{path}.{key}", depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item))
        else:
            kind = type(item).__name__
            raise UnstorableValue(f"{what} is not JSON: a {kind} at {path or 'its top'} (use a list, object, …)")
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > max_bytes:
        named = f" ({setting})" if setting else ""
        raise UnstorableValue(f"{what} is {describe_bytes(size)}, over the limit of {describe_bytes(max_bytes)}{named}")
    return size
