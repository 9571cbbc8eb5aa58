"""A body sent chunked (no Content-Length) through the real web server is read, not taken for `{}`."""

import http.client
import json
from urllib.parse import urlsplit

import pytest
from rest_framework.authtoken.models import Token

from executions.models import Run
from tests.support.api import user_with
from tests.support.runs import steps, workflow
from tests.support.web import daphne_server


def post_chunked(url: str, path: str, chunks: list[bytes], token: str) -> tuple[int, dict]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    # An iterable body without Content-Length goes out as Transfer-Encoding: chunked.
    connection.request("POST", path, body=iter(chunks), headers=headers, encode_chunked=True)
    response = connection.getresponse()
    body = json.loads(response.read() or b"null")
    connection.close()
    return response.status, body


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_is_read_in_full_or_refused_when_over_the_limit(settings):
    workflow(
        steps({"id": "a", "action": "echo"}, defaults={"queue": "nobody-reads-this"}, input_schema={"required": ["n"]}),
        slug="chunked",
    )
    token = Token.objects.create(user=user_with("executions.add_run", "executions.view_run")).key
    limit = settings.CHORDFLOW_API_MAX_BODY_BYTES
    with daphne_server() as url:
        status, body = post_chunked(url, "/api/workflows/chunked/runs/", [b'{"input": ', b'{"n": 7}}'], token)
        assert status == 201, body
        assert body["input"] == {"n": 7}
        status, body = post_chunked(url, "/api/workflows/chunked/runs/", [b" " * limit, b"{}"], token)
        assert status == 413 and body == {"detail": f"the request body is over the limit of {limit} bytes (1024 KiB)"}
    assert list(Run.objects.values_list("input", flat=True)) == [{"n": 7}]
