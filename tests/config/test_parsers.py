"""The JSON parser refuses, with a 400 saying what and where, bodies that could not be stored or sent back."""

import pytest

from executions.models import Run
from tests.support.api import token_client, user_with
from tests.support.runs import steps, workflow

START = "/api/workflows/p/runs/"


@pytest.fixture
def api():
    workflow(steps({"id": "a", "action": "echo"}, defaults={"queue": "nobody-reads-this"}), slug="p")
    return token_client(user_with("executions.add_run", "executions.view_run"))


def post(api, raw: str):
    return api.post(START, raw, content_type="application/json")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("raw", "path", "says"),
    [
        ('{"input": {"name": "\\ud800"}}', "input.name", "a lone UTF-16 surrogate (\\ud800) at character 0"),
        ('{"input": {"name": "ok\\udfff"}}', "input.name", "a lone UTF-16 surrogate (\\udfff) at character 2"),
        ('{"input": {"xs": [1, "a\\u0000b"]}}', "input.xs[1]", "NUL (\\u0000) at character 1"),
        ('{"input": {"\\u0000": 1}}', "input", "a key holds NUL (\\u0000) at character 0"),
        ('{"idempotency_key": "\\ud83d"}', "idempotency_key", "a lone UTF-16 surrogate (\\ud83d)"),
        ('{"input": {"big": 1e999}}', "input.big", "a number too large for a 64-bit float"),
    ],
)
def test_unstorable_text_is_refused_where_it_is_and_nothing_is_stored(api, raw, path, says):
    response = post(api, raw)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["detail"].startswith("invalid JSON body: ") and says in body["detail"]
    assert [p["path"] for p in body["problems"]] == [path] and says in body["problems"][0]["message"]
    assert Run.objects.count() == 0
    assert api.get("/api/runs/").status_code == 200


@pytest.mark.django_db
def test_a_surrogate_pair_is_one_valid_character_and_is_accepted(api):
    response = post(api, '{"input": {"smile": "\\ud83d\\ude00"}}')
    assert response.status_code == 201 and response.json()["input"] == {"smile": "\U0001f600"}
    assert api.get("/api/runs/").json()["results"][0]["input"] == {"smile": "\U0001f600"}


@pytest.mark.django_db
def test_nesting_past_the_limit_is_a_400_naming_the_limit(api, settings):
    deep = post(api, '{"input": ' + "[" * 5000 + "]" * 5000 + "}")
    assert deep.status_code == 400
    assert deep.json()["detail"] == (
        "invalid JSON body: (body): nested deeper than the limit of 64 levels (CHORDFLOW_MAX_JSON_DEPTH), "
        "at character 73"
    )
    settings.CHORDFLOW_MAX_JSON_DEPTH = 3
    assert post(api, '{"input": {"a": {"b": 1}}}').status_code == 201
    assert post(api, '{"input": {"a": {"b": [1]}}}').status_code == 400
    assert post(api, '{"input": {"a": {"b": "[[[[{{{{"}}}').status_code == 201  # brackets in strings do not count
    assert Run.objects.count() == 2


@pytest.mark.django_db
def test_a_start_without_a_body_is_a_400_not_a_run_with_defaults(api):
    for response in (api.post(START), api.generic("POST", START, "", content_type="application/json")):
        assert response.status_code == 400, response.content
        assert response.json() == {"detail": "the request body is empty: send a JSON object"}
    no_type = api.generic("POST", START, '{"input": {}}', content_type="")
    assert no_type.status_code == 415
    assert Run.objects.count() == 0
    assert post(api, "{}").status_code == 201  # an empty object is a body: every field takes its default


@pytest.mark.django_db
def test_every_json_endpoint_uses_the_parser(api):
    admin = token_client(user_with(superuser=True))
    response = admin.post("/api/workflows/", '{"slug": "w\\u0000"}', content_type="application/json")
    assert response.status_code == 400 and response.json()["problems"] == [
        {"path": "slug", "message": "NUL (\\u0000) at character 1: JSON strings must be valid Unicode without NUL"}
    ]
