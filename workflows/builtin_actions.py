"""The actions every installation has: echo, sleep and http."""

from __future__ import annotations

import email.utils
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from workflows.actions import ActionContext, action
from workflows.exceptions import PermanentError, RetryableError

HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
HTTP_DEFAULT_TIMEOUT = 30.0
HTTP_MAX_BODY_BYTES = 10 * 1024 * 1024


@action("echo")
def echo(params: Any, context: ActionContext) -> Any:
    """Output = the resolved params."""
    return params


@action("sleep")
def sleep(params: Any, context: ActionContext) -> dict:
    seconds = params.get("seconds") if isinstance(params, dict) else None
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        raise PermanentError(f"sleep needs params.seconds, a number >= 0 (got {seconds!r})")
    time.sleep(seconds)
    return {"slept": seconds}


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _http_request(params: Any) -> urllib.request.Request:
    if not isinstance(params, dict):
        raise PermanentError("http needs params as an object with at least a url")
    method = str(params.get("method", "GET")).upper()
    if method not in HTTP_METHODS:
        raise PermanentError(f"http: method {method!r} is not one of {', '.join(sorted(HTTP_METHODS))}")
    url = params.get("url")
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in {"http", "https"}:
        raise PermanentError(f"http: url must be an http(s) URL (got {url!r})")
    query = params.get("query")
    if query:
        if not isinstance(query, dict):
            raise PermanentError("http: query must be an object")
        url += ("&" if urllib.parse.urlsplit(url).query else "?") + urllib.parse.urlencode(query, doseq=True)
    headers = {str(k): str(v) for k, v in (params.get("headers") or {}).items()}
    data = None
    if "json" in params:
        data = json.dumps(params["json"]).encode()
        headers.setdefault("Content-Type", "application/json")
    elif "body" in params:
        data = str(params["body"]).encode()
    return urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 (scheme checked)


@action("http")
def http(params: Any, context: ActionContext) -> dict:
    """Output: status, headers, and `json` (when the body is JSON) or `text`.

    Connection errors, timeouts, 5xx and 429 are retryable (429 and 503 honour Retry-After);
    other 4xx fail at once.
    """
    request = _http_request(params)
    request.add_header("Idempotency-Key", context.idempotency_key)
    timeout = float(params.get("timeout", HTTP_DEFAULT_TIMEOUT))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
            status, headers, body = response.status, dict(response.headers), response.read(HTTP_MAX_BODY_BYTES)
    except urllib.error.HTTPError as exc:
        detail = exc.read(2000).decode(errors="replace")
        message = f"{request.get_method()} {request.full_url} answered {exc.code} {exc.reason}: {detail}"
        if exc.code >= 500 or exc.code == 429:
            raise RetryableError(message, retry_after=parse_retry_after(exc.headers.get("Retry-After"))) from None
        raise PermanentError(message) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RetryableError(f"{request.get_method()} {request.full_url} failed: {reason}") from None
    output: dict[str, Any] = {"status": status, "headers": headers}
    text = body.decode(errors="replace")
    if "json" in headers.get("Content-Type", ""):
        try:
            output["json"] = json.loads(text) if text else None
        except json.JSONDecodeError:
            output["text"] = text
    else:
        output["text"] = text
    return output
