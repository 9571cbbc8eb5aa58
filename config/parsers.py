"""The API's JSON parser: refuses, with a 4xx naming the place, any body that could not be stored and sent back."""

from __future__ import annotations

import io
import json
import math
import re
from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser

# A JSON string, or one bracket outside strings: enough to measure nesting without parsing.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
# Lone UTF-16 surrogates (`"\ud800"` decodes to one) cannot be encoded as UTF-8, so a run holding one
# could never be rendered again; NUL cannot be stored by PostgreSQL. Both are refused anywhere.
_UNSTORABLE = re.compile("[\ud800-\udfff\x00]")


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"


class InvalidJSON(exceptions.ParseError):
    """A body that is JSON but cannot be accepted; `problems` says what, where."""

    def __init__(self, problems: list[dict]) -> None:
        self.problems = problems
        places = "; ".join(f"{p['path'] or '(body)'}: {p['message']}" for p in problems)
        super().__init__(f"invalid JSON body: {places}")


def _nesting_error(text: str, limit: int) -> str | None:
    depth = 0
    for match in _TOKENS.finditer(text):
        found = match.group()
        if found in ("[", "{"):
            depth += 1
            if depth > limit:
                return (
                    f"nested deeper than the limit of {limit} levels (CHORDFLOW_MAX_JSON_DEPTH), "
                    f"at character {match.start()}"
                )
        elif found in ("]", "}"):
            depth -= 1
    return None


def _describe(text: str) -> str:
    char = _UNSTORABLE.search(text).group()
    what = "NUL (\\u0000)" if char == "\x00" else f"a lone UTF-16 surrogate (\\u{ord(char):04x})"
    return f"{what} at character {text.index(char)}: JSON strings must be valid Unicode without NUL"


def _child(path: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def unstorable_values(value: Any, path: str = "") -> list[dict]:
    """Every string (key or value) holding a lone surrogate or NUL, and every number beyond a float's range."""
    problems: list[dict] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if _UNSTORABLE.search(key):
                problems.append({"path": path, "message": f"a key holds {_describe(key)}"})
                continue
            problems.extend(unstorable_values(item, _child(path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems.extend(unstorable_values(item, f"{path}[{index}]"))
    elif isinstance(value, str) and _UNSTORABLE.search(value):
        problems.append({"path": path, "message": _describe(value)})
    elif isinstance(value, float) and not math.isfinite(value):
        problems.append({"path": path, "message": "a number too large for a 64-bit float"})
    return problems


class BoundedJSONParser(JSONParser):
    """JSON bodies within CHORDFLOW_API_MAX_BODY_BYTES and CHORDFLOW_MAX_JSON_DEPTH, holding only storable text.

    A body over the size limit is refused before it is read, one nested too deep before it is parsed.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.CHORDFLOW_API_MAX_BODY_BYTES
        too_large = RequestTooLarge(f"the request body is over the limit of {limit} bytes ({limit // 1024} KiB)")
        request = (parser_context or {}).get("request")
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        except ValueError:
            declared = 0
        if declared > limit:
            raise too_large
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise too_large
        if not body:
            raise exceptions.ParseError("the request body is empty: send a JSON object")
        try:
            text = body.decode((parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET)
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError(f"the request body is not UTF-8: byte {exc.start} is invalid") from None
        nesting = _nesting_error(text, settings.CHORDFLOW_MAX_JSON_DEPTH)
        if nesting:
            raise InvalidJSON([{"path": "", "message": nesting}])
        data = super().parse(io.BytesIO(body), media_type, parser_context)
        problems = unstorable_values(data)
        if problems:
            raise InvalidJSON(problems)
        return data
