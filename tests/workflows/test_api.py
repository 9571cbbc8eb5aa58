"""REST: /api/workflows/ — create, read, new versions, authentication, permissions, bad input."""

import pytest

from tests.support.api import basic_client, token_client, user_with
from workflows.models import WorkflowVersion

pytestmark = pytest.mark.django_db

DEFINITION = {"name": "Orders", "steps": [{"id": "a", "action": "echo", "params": {"x": "{{ input.x }}"}}]}
EDITOR = ("workflows.view_workflow", "workflows.add_workflow", "workflows.change_workflow")


@pytest.fixture
def editor():
    return token_client(user_with(*EDITOR))


def test_create_read_update_and_list_versions(editor):
    created = editor.post("/api/workflows/", {"slug": "orders", "definition": DEFINITION}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["version"] == 1 and created.json()["name"] == "Orders"

    same = editor.put("/api/workflows/orders/", {"definition": DEFINITION}, format="json")
    assert (same.status_code, same.json()["version"]) == (200, 1)
    changed = {**DEFINITION, "description": "now with a description"}
    updated = editor.put("/api/workflows/orders/", {"definition": changed}, format="json")
    assert (updated.status_code, updated.json()["version"]) == (200, 2)

    versions = editor.get("/api/workflows/orders/versions/").json()
    assert [v["number"] for v in versions["results"]] == [2, 1]
    listed = editor.get("/api/workflows/").json()
    assert [(w["slug"], w["version"]) for w in listed["results"]] == [("orders", 2)]
    assert editor.get("/api/workflows/orders/").json()["definition"] == changed


def test_an_invalid_definition_gets_400_with_every_problem_and_nothing_is_stored(editor):
    bad = {
        "name": "x",
        "steps": [
            {"id": "a", "action": "nope", "depends_on": ["b"]},
            {"id": "b", "action": "echo", "depends_on": ["a"]},
        ],
    }
    response = editor.post("/api/workflows/", {"slug": "bad", "definition": bad}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "invalid workflow definition"
    paths = {p["path"] for p in body["problems"]}
    assert "steps[0].action" in paths and any(p["message"].startswith("dependency cycle") for p in body["problems"])
    assert not WorkflowVersion.objects.exists()


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"slug": "x", "definition": DEFINITION, "colour": "blue"}, "colour"),
        ({"slug": "not a slug", "definition": DEFINITION}, "slug"),
        ({"slug": "x", "definition": "steps: []"}, "definition"),
        ({"definition": DEFINITION}, "slug"),
        ([1, 2], ""),
    ],
)
def test_bad_fields_get_400_naming_the_field(editor, body, where):
    response = editor.post("/api/workflows/", body, format="json")
    assert response.status_code == 400
    assert where in {p["path"] for p in response.json()["problems"]}


def test_malformed_json_an_empty_body_and_a_huge_body_get_4xx(editor, settings):
    assert editor.post("/api/workflows/", "{not json", content_type="application/json").status_code == 400
    assert editor.post("/api/workflows/", "", content_type="application/json").status_code == 400
    settings.CHORDFLOW_API_MAX_BODY_BYTES = 1000
    huge = {"slug": "big", "definition": {**DEFINITION, "description": "x" * 2000}}
    response = editor.post("/api/workflows/", huge, format="json")
    assert response.status_code == 413
    assert "1000 bytes" in response.json()["detail"]


def test_a_taken_slug_is_409_and_a_missing_workflow_404(editor):
    editor.post("/api/workflows/", {"slug": "orders", "definition": DEFINITION}, format="json")
    again = editor.post("/api/workflows/", {"slug": "orders", "definition": DEFINITION}, format="json")
    assert again.status_code == 409
    assert editor.get("/api/workflows/ghost/").status_code == 404
    assert editor.put("/api/workflows/ghost/", {"definition": DEFINITION}, format="json").status_code == 404
    assert editor.get("/api/workflows/ghost/versions/").json()["detail"] == "no workflow with slug 'ghost'"


def test_authentication_and_permissions(client):
    anonymous = client.get("/api/workflows/")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Token"
    viewer = user_with("workflows.view_workflow")
    assert basic_client(viewer).get("/api/workflows/").status_code == 200
    assert basic_client(viewer, password="wrong").get("/api/workflows/").status_code == 401
    refused = token_client(viewer).post("/api/workflows/", {"slug": "x", "definition": DEFINITION}, format="json")
    assert refused.status_code == 403
    assert "workflows.add_workflow" in refused.json()["detail"]
    assert token_client(user_with()).get("/api/workflows/").status_code == 403
    client.force_login(user_with(superuser=True))
    assert client.get("/api/workflows/").status_code == 200  # session
