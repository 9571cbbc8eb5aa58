"""The http, echo and sleep actions, called directly against a real local HTTP server."""

import datetime
import ipaddress
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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


# --- Destinations (issue #10): the test settings allow 127.0.0.1 only; these tests take that away ----


@pytest.fixture
def loopback_denied(settings):
    """Production defaults: no exceptions to the non-public deny, no allowlist."""
    settings.CHORDFLOW_HTTP_ALLOWED_HOSTS = []
    settings.CHORDFLOW_HTTP_ALLOWED_NETWORKS = []
    settings.CHORDFLOW_HTTP_DENIED_NETWORKS = []
    return settings


@pytest.fixture
def no_outside_traffic(monkeypatch):
    """A tripwire: a connection to anything but loopback fails the test instead of leaving the machine."""
    connect = socket.socket.connect

    def guarded(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not ipaddress.ip_address(address[0]).is_loopback:
            pytest.fail(f"the http action connected to {address[0]}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def other_server():
    """A second server on 127.0.0.2: loopback too (Linux routes all of 127/8 here), but not allowed."""
    with ScriptedServer(host="127.0.0.2") as scripted:
        yield scripted


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1", "2130706433", "0.0.0.0", "[::ffff:127.0.0.1]", "localhost"])
def test_http_refuses_loopback_in_any_spelling_before_connecting(server, loopback_denied, host):
    server.reply("/admin/login/", 200, {"secret": "admin page"})
    with pytest.raises(PermanentError, match="not allowed") as caught:
        http({"url": f"http://{host}:{server.port}/admin/login/"})
    assert f"{host}:{server.port}/admin/login/" in str(caught.value)
    assert server.requests == []


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/latest/", "http://100.64.0.1/"]
)
def test_http_refuses_the_metadata_address_and_other_non_public_networks(loopback_denied, no_outside_traffic, url):
    with pytest.raises(PermanentError, match="not allowed"):
        http({"url": url, "timeout": 2})


@pytest.mark.parametrize(
    "target", ["http://127.0.0.2:{other}/secret?token=abc", "http://169.254.169.254/latest/meta-data/?token=abc"]
)
def test_http_refuses_a_redirect_to_a_denied_address(server, other_server, no_outside_traffic, settings, target):
    settings.CHORDFLOW_HTTP_ALLOWED_NETWORKS = ["127.0.0.1/32"]  # the first hop only
    target = target.format(other=other_server.port)
    server.reply("/start", 302, {}, {"Location": target})
    other_server.reply("/secret", 200, {"secret": "internal"})
    with pytest.raises(PermanentError, match="not allowed") as caught:
        http({"url": f"{server.url}/start"})
    assert target.split("?")[0] in str(caught.value) and "token" not in str(caught.value)
    assert len(server.requests) == 1 and other_server.requests == []


def test_http_allowed_hosts_with_a_port_admit_that_port_only(server, settings):
    with ScriptedServer() as admin:
        settings.CHORDFLOW_HTTP_ALLOWED_HOSTS = [f"127.0.0.1:{server.port}"]
        server.reply("/start", 302, {}, {"Location": f"{admin.url}/admin/"})
        admin.reply("/admin/", 200, {"secret": "admin page"})
        with pytest.raises(PermanentError, match="not allowed"):
            http({"url": f"{server.url}/start"})
        assert admin.requests == []
        server.reply("/ok", 200, {"ok": True})
        assert http({"url": f"{server.url}/ok"})["json"] == {"ok": True}


def test_http_allowed_hosts_name_wildcards_and_deny_the_rest(server, settings):
    settings.CHORDFLOW_HTTP_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    settings.CHORDFLOW_HTTP_ALLOWED_HOSTS = ["*.example.com", "api.example.org"]
    with pytest.raises(PermanentError, match="CHORDFLOW_HTTP_ALLOWED_HOSTS"):
        http({"url": f"http://localhost:{server.port}/"})
    settings.CHORDFLOW_HTTP_ALLOWED_HOSTS = ["localhost"]
    server.reply("/", 200, {"ok": True})
    assert http({"url": f"http://localhost:{server.port}/"})["json"] == {"ok": True}


def test_http_denied_networks_win_over_allowed_ones(server, settings):
    settings.CHORDFLOW_HTTP_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.CHORDFLOW_HTTP_DENIED_NETWORKS = ["127.0.0.1/32"]
    with pytest.raises(PermanentError, match="not allowed"):
        http({"url": f"{server.url}/"})
    assert server.requests == []


def test_http_connects_to_the_checked_address_and_keeps_the_name_as_host(server, settings):
    settings.CHORDFLOW_HTTP_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    server.reply("/", 200, {"ok": True})
    assert http({"url": f"http://localhost:{server.port}/"})["json"] == {"ok": True}
    assert server.requests[0]["headers"]["Host"] == f"localhost:{server.port}"


def test_http_follows_redirects_up_to_a_limit(server, settings):
    server.reply("/old", 301, {}, {"Location": "/new"})
    server.reply("/new", 200, {"moved": True})
    assert http({"url": f"{server.url}/old"})["json"] == {"moved": True}
    settings.CHORDFLOW_HTTP_MAX_REDIRECTS = 2
    for _ in range(3):
        server.reply("/loop", 302, {}, {"Location": "/loop"})
    with pytest.raises(PermanentError, match="more than 2 redirects"):
        http({"url": f"{server.url}/loop"})


def test_http_a_redirect_elsewhere_drops_credentials_and_a_303_turns_into_get(server, other_server, settings):
    settings.CHORDFLOW_HTTP_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    server.reply("/submit", 303, {}, {"Location": f"{other_server.url}/done"})
    other_server.reply("/done", 200, {"done": True})
    out = http({"method": "POST", "url": f"{server.url}/submit", "json": {"a": 1}, "headers": {"Authorization": "k"}})
    assert out["json"] == {"done": True}
    follow = other_server.requests[0]
    assert follow["method"] == "GET" and follow["body"] == ""
    assert "Authorization" not in follow["headers"]


@pytest.mark.parametrize("name", ["Host", "host", "HOST"])
def test_http_refuses_a_host_header(server, name):
    with pytest.raises(PermanentError, match="Host"):
        http({"url": f"{server.url}/", "headers": {name: "admin.internal"}})
    assert server.requests == []


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"url": "{url}/x?api_key=SECRET#frag"}, PermanentError),
        ({"url": "{url}/x", "query": {"api_key": "SECRET"}}, PermanentError),
        ({"url": "http://127.0.0.1:1/x?api_key=SECRET", "timeout": 2}, RetryableError),
        ({"url": "http://user:SECRET@127.0.0.1:{port}/x?api_key=SECRET"}, PermanentError),
        ({"url": "ftp://user:SECRET@127.0.0.1/x?api_key=SECRET"}, PermanentError),
    ],
)
def test_http_errors_name_the_url_without_query_fragment_or_credentials(server, params, error):
    server.reply("/x", 404, {"error": "no such thing"})
    params = {k: v.format(url=server.url, port=server.port) if isinstance(v, str) else v for k, v in params.items()}
    with pytest.raises(error) as caught:
        http(params)
    message = str(caught.value)
    assert "SECRET" not in message and "frag" not in message
    assert "127.0.0.1" in message and "/x" in message


def test_http_refusals_name_the_url_without_query(server, loopback_denied):
    with pytest.raises(PermanentError) as caught:
        http({"url": f"{server.url}/x?api_key=SECRET"})
    assert "SECRET" not in str(caught.value) and f"{server.url}/x" in str(caught.value)


@pytest.mark.parametrize("name", ["Content-type", "content-type", "CONTENT-TYPE"])
def test_http_parses_json_whatever_the_case_of_content_type(server, name):
    server.reply("/j", 200, {"a": 1}, {name: "application/json; charset=utf-8"})
    out = http({"url": f"{server.url}/j"})
    assert out["json"] == {"a": 1}
    assert out["headers"][name].startswith("application/json")


def test_http_request_headers_are_case_insensitive(server):
    server.reply("/load", 200, {})
    http({"method": "POST", "url": f"{server.url}/load", "json": {"a": 1}, "headers": {"content-type": "text/x"}})
    sent = [value for key, value in server.requests[0]["header_list"] if key.lower() == "content-type"]
    assert sent == ["text/x"]


@pytest.mark.parametrize(
    "params",
    [
        {"url": "{url}/x?api_key=SE CRET"},
        {"url": "{url}/x", "headers": {"Authorization": "Bearer SECRET\r\nX-Injected: 1"}},
        {"url": "{url}/x", "headers": {"Bad Name": "SECRET"}},
    ],
)
def test_http_refuses_control_characters_without_repeating_them(server, params):
    params = {**params, "url": params["url"].format(url=server.url)}
    with pytest.raises(PermanentError) as caught:
        http(params)
    assert "SECRET" not in str(caught.value) and "CRET" not in str(caught.value)
    assert server.requests == []


@pytest.fixture
def tls_for_localhost(tmp_path, monkeypatch):
    """A server context with a self-signed certificate for the name localhost only, which the client trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def test_https_verifies_the_certificate_for_the_name_while_connecting_to_the_checked_address(
    tls_for_localhost, settings
):
    settings.CHORDFLOW_HTTP_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    with ScriptedServer(tls=tls_for_localhost) as server:
        server.reply("/", 200, {"tls": True})
        assert http({"url": f"https://localhost:{server.port}/"})["json"] == {"tls": True}
        assert server.requests[0]["headers"]["Host"] == f"localhost:{server.port}"
        with pytest.raises(RetryableError, match=r"CERTIFICATE_VERIFY_FAILED|IP address mismatch"):
            http({"url": f"https://127.0.0.1:{server.port}/", "timeout": 5})
