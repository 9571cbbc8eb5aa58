"""The OpenAPI schema is true: schemathesis drives every operation with data the schema allows and
data it forbids, and finds no 5xx, no answer that breaks the schema, and no forbidden input accepted."""

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from executions.services import run_start
from tests.support.api import user_with
from tests.support.runs import steps, workflow

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
# Deterministic and bounded (a minute or so); NUL is left out of generated text, since the API refuses
# it by design (PostgreSQL cannot store it) and JSON Schema cannot say so.
schema.config.generation.update(modes=["positive", "negative"], deterministic=True, allow_x00=False)
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    negative_data_rejection,
]


@pytest.fixture
def token(django_db_blocker):
    with django_db_blocker.unblock():
        user = user_with(superuser=True)
        wf = workflow(steps({"id": "a", "action": "echo"}, defaults={"queue": "nobody-reads-this"}), slug="seeded")
        run_start(workflow=wf)
        return Token.objects.create(user=user).key


@pytest.mark.django_db(transaction=True)
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_matches_its_schema(case, token):
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)


def test_the_schema_and_docs_are_served(client):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
