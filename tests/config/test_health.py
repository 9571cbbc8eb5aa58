from pathlib import Path

import pytest

from config.celery_app import app


@pytest.mark.django_db
def test_healthz_reports_database_and_broker_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "down": [], "checks": {"database": "ok", "broker": "ok"}}


@pytest.mark.django_db
def test_healthz_names_the_broker_when_it_is_down(client, monkeypatch):
    # A port nothing listens on: the check must fail fast and say which dependency is down.
    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["down"] == ["broker"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("down:")


def test_healthz_names_the_database_when_it_is_down(client, monkeypatch):
    from django.db import connection

    def broken_cursor(*args, **kwargs):
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["down"] == ["database"]


def test_healthz_needs_no_login_and_allows_only_get(client):
    assert client.post("/healthz").status_code == 405


def test_the_embedded_redis_starts_from_a_relative_folder(tmp_path, monkeypatch):
    from config.embedded_redis import EmbeddedRedis

    monkeypatch.chdir(tmp_path)
    server = EmbeddedRedis(data_dir=Path("relative/redis")).start()
    try:
        assert server.url.startswith("redis://127.0.0.1:")
        assert (tmp_path / "relative" / "redis").is_dir()
    finally:
        server.stop()


@pytest.mark.django_db
def test_healthz_answers_probes_by_ip_that_allowed_hosts_does_not_list(client, settings):
    """Compose and Kubernetes probe 127.0.0.1 or a pod IP; every other page still checks the host."""
    settings.ALLOWED_HOSTS = ["chordflow.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert client.get("/accounts/login/", HTTP_HOST="10.1.2.3:8000").status_code == 400
