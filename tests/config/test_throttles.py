"""API rate limits: per client for anonymous requests and wrong credentials, per user for the rest."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.support.api import basic_client, token_client, user_with


@pytest.fixture(autouse=True)
def fresh_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.mark.django_db
def test_a_user_over_the_rate_gets_429_saying_when_to_come_back(settings):
    settings.CHORDFLOW_API_THROTTLE_USER = "3/minute"
    api, other = token_client(user_with("executions.view_run")), token_client(user_with("executions.view_run"))
    assert [api.get("/api/runs/").status_code for _ in range(3)] == [200, 200, 200]
    refused = api.get("/api/runs/")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert refused.json()["detail"].startswith("Request was throttled.")
    assert other.get("/api/runs/").status_code == 200  # per user


@pytest.mark.django_db
def test_anonymous_requests_are_counted_per_client(settings):
    settings.CHORDFLOW_API_THROTTLE_ANON = "2/minute"
    anonymous = APIClient()
    assert [anonymous.get("/api/schema/").status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.django_db
def test_wrong_tokens_are_limited_per_client_even_before_the_right_one(settings):
    settings.CHORDFLOW_API_THROTTLE_AUTH_FAILURES = "5/minute"
    guesser = APIClient()
    guesser.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert [guesser.get("/api/runs/").status_code for _ in range(5)] == [401] * 5
    refused = guesser.get("/api/runs/")
    assert refused.status_code == 429
    assert refused.json()["detail"].startswith("too many requests with wrong credentials from your address")
    assert token_client(user_with("executions.view_run")).get("/api/runs/").status_code == 429  # same address
    settings.CHORDFLOW_API_THROTTLE_AUTH_FAILURES = "6/minute"
    assert token_client(user_with("executions.view_run")).get("/api/runs/").status_code == 200


@pytest.mark.django_db
def test_wrong_basic_passwords_lock_the_username_from_that_address(settings):
    viewer = user_with("executions.view_run")
    for _ in range(settings.CHORDFLOW_LOGIN_FAILURE_LIMIT - 1):
        assert basic_client(viewer, password="wrong").get("/api/runs/").status_code == 401
    locked = basic_client(viewer, password="wrong").get("/api/runs/")
    assert locked.status_code == 429 and locked.json()["detail"] == settings.AXES_COOLOFF_MESSAGE
    right = basic_client(viewer).get("/api/runs/")
    assert right.status_code == 429 and right.json()["detail"] == settings.AXES_COOLOFF_MESSAGE
    assert token_client(viewer).get("/api/runs/").status_code == 200  # a token is not a password: not locked
