"""The http, echo and sleep actions, called directly against a real local HTTP server."""

import pytest

from tests.support.http_server import ScriptedServer
from workflows.actions import ActionContext, get_action
from workflows.exceptions import PermanentError, RetryableError, UnknownActionError

CONTEXT = ActionContext(run_id="r1", workflow="wf", step_id="s", attempt=1)


@pytest.fixture
def server():
    with ScriptedServer() as scripted:
        yield scripted


def http(params):
    return get_action("http")(params, CONTEXT)


def test_http_returns_status_headers_and_parsed_json(server):
    server.reply("/orders/7", 200, {"items": [1, 2]})
    out = http({"url": f"{server.url}/orders/7", "query": {"expand": "lines"}, "headers": {"X-Trace": "t"}})
    assert out["status"] == 200 and out["json"] == {"items": [1, 2]}
    request = server.requests[0]
    assert request["path"] == "/orders/7?expand=lines"
    assert request["headers"]["X-Trace"] == "t"
    assert request["headers"]["Idempotency-Key"] == "r1:s"


def test_http_sends_json_bodies(server):
    server.reply("/load", 201, {"ok": True})
    out = http({"method": "post", "url": f"{server.url}/load", "json": {"a": 1}})
    assert out["status"] == 201
    assert server.requests[0]["body"] == '{"a": 1}'
    assert server.requests[0]["headers"]["Content-Type"] == "application/json"


@pytest.mark.parametrize(("status", "retry_after", "expected"), [(503, "7", 7.0), (429, None, None), (500, None, None)])
def test_http_5xx_and_429_are_retryable_and_honour_retry_after(server, status, retry_after, expected):
    server.reply("/x", status, {"error": "busy"}, {"Retry-After": retry_after} if retry_after else {})
    with pytest.raises(RetryableError) as caught:
        http({"url": f"{server.url}/x"})
    assert caught.value.retry_after == expected
    assert str(status) in str(caught.value)


def test_http_other_4xx_fail_at_once(server):
    server.reply("/x", 404, {"error": "no such order"})
    with pytest.raises(PermanentError, match="404"):
        http({"url": f"{server.url}/x"})


def test_http_connection_errors_are_retryable():
    with pytest.raises(RetryableError, match="failed"):
        http({"url": "http://127.0.0.1:1/", "timeout": 2})


@pytest.mark.parametrize(
    "params", [{"url": "file:///etc/passwd"}, {"url": "http://x", "method": "BREW"}, {}, "not an object"]
)
def test_http_refuses_bad_params_permanently(params):
    with pytest.raises(PermanentError):
        http(params)


def test_echo_sleep_and_an_unknown_action():
    assert get_action("echo")({"a": [1]}, CONTEXT) == {"a": [1]}
    assert get_action("sleep")({"seconds": 0}, CONTEXT) == {"slept": 0}
    with pytest.raises(PermanentError):
        get_action("sleep")({"seconds": "soon"}, CONTEXT)
    with pytest.raises(UnknownActionError, match="WORKFLOWS_ACTION_MODULES"):
        get_action("shop.reserve")
