"""The actions every installation has: echo, sleep and http."""

from __future__ import annotations

import email.utils
import functools
import json
import math
import re
import socket
import time
import urllib.parse
from dataclasses import dataclass, replace
from email.message import Message
from http.client import HTTPConnection, HTTPException, HTTPSConnection, InvalidURL
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from workflows import netguard
from workflows.actions import ActionContext, action
from workflows.exceptions import AttemptCancelled, PermanentError, RetryableError

HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
HTTP_DEFAULT_TIMEOUT = 30.0
HTTP_MAX_BODY_BYTES = 10 * 1024 * 1024
HTTP_ERROR_DETAIL_CHARS = 2000
HTTP_DEFAULT_PORTS = {"http": 80, "https": 443}
HTTP_REDIRECTS = {301, 302, 303, 307, 308}
# Sent to the first origin only: a redirect to another host, port or scheme goes without them.
HTTP_CREDENTIAL_HEADERS = {"authorization", "proxy-authorization", "cookie"}
HTTP_USER_AGENT = "Chordflow"
HTTP_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
HTTP_HEADER_VALUE_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# `sleep` naps this long between asking whether its step was cancelled.
SLEEP_SLICE_SECONDS = 0.25


@action("echo")
def echo(params: Any, context: ActionContext) -> Any:
    """Output = the resolved params."""
    return params


@action("sleep")
def sleep(params: Any, context: ActionContext) -> dict:
    """Sleeps in short naps and stops as soon as its step is cancelled, freeing the worker."""
    seconds = params.get("seconds") if isinstance(params, dict) else None
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        raise PermanentError(f"sleep needs params.seconds, a number >= 0 (got {seconds!r})")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if context.cancelled():
            raise AttemptCancelled(f"sleep: cancelled with {left:.1f}s of {seconds:g}s left")
        time.sleep(min(left, SLEEP_SLICE_SECONDS))
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


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None

    @property
    def shown(self) -> str:
        """How error messages name the request: the URL without credentials, query or fragment."""
        return f"{self.method} {netguard.display_url(self.url)}"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    reason: str
    headers: Message  # case-insensitive lookups
    body: bytes


def _without(headers: dict[str, str], *names: str) -> dict[str, str]:
    """`headers` less every header named (in any case)."""
    return {key: value for key, value in headers.items() if key.lower() not in names}


def _scheme(url: str) -> str | None:
    try:
        return urllib.parse.urlsplit(url).scheme
    except ValueError:  # an unbalanced [ in the host
        return None


def _has(headers: dict[str, str], name: str) -> bool:
    return any(key.lower() == name for key in headers)


def _http_request(params: Any, context: ActionContext) -> HttpRequest:
    if not isinstance(params, dict):
        raise PermanentError("http needs params as an object with at least a url")
    method = str(params.get("method", "GET")).upper()
    if method not in HTTP_METHODS:
        raise PermanentError(f"http: method {method!r} is not one of {', '.join(sorted(HTTP_METHODS))}")
    url = params.get("url")
    if not isinstance(url, str) or _scheme(url) not in HTTP_DEFAULT_PORTS:
        shown = netguard.display_url(url) if isinstance(url, str) else repr(url)
        raise PermanentError(f"http: url must be an http(s) URL (got {shown})")
    query = params.get("query")
    if query:
        if not isinstance(query, dict):
            raise PermanentError("http: query must be an object")
        url += ("&" if urllib.parse.urlsplit(url).query else "?") + urllib.parse.urlencode(query, doseq=True)
    given = params.get("headers") or {}
    if not isinstance(given, dict):
        raise PermanentError("http: headers must be an object")
    headers = {str(k): str(v) for k, v in given.items()}
    for name, value in headers.items():
        if not HTTP_HEADER_NAME.fullmatch(name) or HTTP_HEADER_VALUE_FORBIDDEN.search(value):
            raise PermanentError(f"http: header {name!r} has a name or value with a line break or control character")
    if _has(headers, "host"):
        raise PermanentError("http: params.headers may not set Host; the url's host is the one sent")
    headers = {**_without(headers, "idempotency-key"), "Idempotency-Key": context.idempotency_key}
    if not _has(headers, "user-agent"):
        headers["User-Agent"] = HTTP_USER_AGENT
    data = None
    if "json" in params:
        data = json.dumps(params["json"]).encode()
        if not _has(headers, "content-type"):
            headers["Content-Type"] = "application/json"
    elif "body" in params:
        data = str(params["body"]).encode()
    return HttpRequest(method=method, url=url, headers=headers, body=data)


def _connect_checked(addresses: tuple[tuple, ...], _address: Any, timeout: float, *_: Any) -> socket.socket:
    """Connect to the first of the checked addresses that answers; never resolve the name again."""
    error: OSError = OSError("no address to connect to")
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


def _http_send(request: HttpRequest, *, timeout: float, policy: netguard.Policy) -> HttpResponse:
    """One exchange with one server, over a connection to an address the policy allowed."""
    parts = urllib.parse.urlsplit(request.url)
    try:
        port = parts.port or HTTP_DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise PermanentError(f"{request.shown}: the port is not a number from 0 to 65535") from None
    if parts.username is not None or parts.password is not None:
        raise PermanentError(f"{request.shown}: credentials go in an Authorization header, not in the url")
    try:
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except UnicodeError:
        host = ""
    if not host:
        raise PermanentError(f"{request.shown}: the url has no valid host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        target = netguard.resolve(request.url, host, port, policy)
        kind = HTTPSConnection if parts.scheme == "https" else HTTPConnection
        connection = kind(host, port, timeout=timeout)
        # http.client's hook for opening the socket: Host and TLS SNI stay the name, the socket
        # goes to an address that was checked.
        connection._create_connection = functools.partial(_connect_checked, target.addresses)
        try:
            connection.request(request.method, path, body=request.body, headers=request.headers)
            response = connection.getresponse()
            body = response.read(HTTP_MAX_BODY_BYTES)
        finally:
            connection.close()
    except InvalidURL:  # its message would repeat the query string
        raise PermanentError(f"{request.shown}: the url has a character HTTP does not allow") from None
    except (OSError, HTTPException) as exc:  # OSError first: a certificate error is a ValueError too
        raise RetryableError(f"{request.shown} failed: {exc}") from None
    except ValueError:  # its message would repeat a header's value
        raise PermanentError(f"{request.shown}: the url or a header has a character HTTP does not allow") from None
    return HttpResponse(status=response.status, reason=response.reason, headers=response.headers, body=body)


def _redirected(request: HttpRequest, status: int, location: str) -> HttpRequest:
    """The request a redirect asks for: 303 (and 301/302 after POST) turn into GET without a body."""
    try:
        url = urllib.parse.urljoin(request.url, location)
    except ValueError:
        url = ""
    if _scheme(url) not in HTTP_DEFAULT_PORTS:
        raise PermanentError(f"{request.shown} redirected to a location that is not an http(s) URL")
    method, body, headers = request.method, request.body, request.headers
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, body, headers = "GET", None, _without(headers, "content-type", "content-length")

    def origin(value: str) -> tuple:
        parts = urllib.parse.urlsplit(value)
        return parts.scheme, parts.netloc.rpartition("@")[2].lower()

    if origin(url) != origin(request.url):
        headers = _without(headers, *HTTP_CREDENTIAL_HEADERS)
    return replace(request, method=method, url=url, body=body, headers=headers)


def _http_exchange(request: HttpRequest, *, timeout: float, context: ActionContext) -> tuple[HttpRequest, HttpResponse]:
    """Send `request`, following redirects ourselves so that every hop's address is checked.

    Returns the last hop's request (for error messages) and its response. Before each hop it stops if
    the step was cancelled; a hop itself is bounded by `timeout` (and the cancel grace).
    """
    try:
        policy = netguard.policy_from_settings()
    except ImproperlyConfigured as exc:
        raise PermanentError(f"http: {exc}") from None
    limit = settings.CHORDFLOW_HTTP_MAX_REDIRECTS
    for _ in range(limit + 1):
        if context.cancelled():
            raise AttemptCancelled(f"{request.shown}: cancelled")
        response = _http_send(request, timeout=timeout, policy=policy)
        location = response.headers.get("Location")
        if response.status not in HTTP_REDIRECTS or not location:
            return request, response
        request = _redirected(request, response.status, location)
    raise PermanentError(f"{request.shown}: more than {limit} redirects")


@action("http")
def http(params: Any, context: ActionContext) -> dict:
    """Output: status, headers, and `json` (when the body is JSON) or `text`.

    Connection errors, timeouts, 5xx and 429 are retryable (429 and 503 honour Retry-After);
    other 4xx fail at once. Every hop goes only where netguard allows (CHORDFLOW_HTTP_* settings).
    """
    request = _http_request(params, context)
    raw_timeout = params.get("timeout", HTTP_DEFAULT_TIMEOUT)
    try:
        timeout = float(raw_timeout)
    except (TypeError, ValueError):
        timeout = math.nan
    if isinstance(raw_timeout, bool) or not 0 < timeout < math.inf:
        raise PermanentError(f"http: timeout must be a number of seconds > 0 (got {raw_timeout!r})")
    request, response = _http_exchange(request, timeout=timeout, context=context)
    if not 200 <= response.status < 300:
        detail = response.body[:HTTP_ERROR_DETAIL_CHARS].decode(errors="replace")
        message = f"{request.shown} answered {response.status} {response.reason}: {detail}"
        if response.status >= 500 or response.status == 429:
            raise RetryableError(message, retry_after=parse_retry_after(response.headers.get("Retry-After")))
        raise PermanentError(message)
    output: dict[str, Any] = {"status": response.status, "headers": dict(response.headers)}
    text = response.body.decode(errors="replace")
    if "json" in response.headers.get("Content-Type", "").lower():
        try:
            output["json"] = json.loads(text) if text else None
        except json.JSONDecodeError:
            output["text"] = text
    else:
        output["text"] = text
    return output
