"""The addresses `make run` prints lead somewhere: `/` to the admin, `/api/` to a list of the API."""

import pytest

pytestmark = pytest.mark.django_db


def test_the_root_redirects_to_the_admin(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_the_api_root_lists_its_endpoints_with_links_and_the_docs(client):
    response = client.get("/api/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["docs"] == "http://testserver/api/docs/"
    assert body["schema"] == "http://testserver/api/schema/"
    assert body["endpoints"]["workflows"] == "http://testserver/api/workflows/"
    assert body["endpoints"]["runs"] == "http://testserver/api/runs/"
    assert body["endpoints"]["schedules"] == "http://testserver/api/schedules/"
    assert body["endpoints"]["approvals"] == "http://testserver/api/approvals/"
    assert client.get(body["docs"]).status_code == 200
