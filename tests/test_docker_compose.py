"""No Docker engine runs here, so the compose file is checked by reading it against the project."""

import re
from pathlib import Path

import pytest
import yaml
from django.conf import settings

BASE_DIR = Path(__file__).resolve().parent.parent
APP_SERVICES = {"web", "worker", "beat", "flower"}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())


def settings_source() -> str:
    return "".join(p.read_text() for p in (BASE_DIR / "config" / "settings").glob("*.py"))


def test_it_has_every_service(compose):
    assert set(compose["services"]) == {"postgres", "redis"} | APP_SERVICES


def test_app_services_share_one_image_and_differ_by_command(compose):
    services = compose["services"]
    builds = {name: (services[name]["build"]["dockerfile"], services[name]["image"]) for name in APP_SERVICES}
    assert len(set(builds.values())) == 1
    dockerfile = next(iter(builds.values()))[0]
    assert (BASE_DIR / dockerfile).is_file()
    commands = {name: services[name]["command"] for name in APP_SERVICES}
    assert "daphne" in commands["web"] and "config.asgi:application" in commands["web"]
    assert commands["worker"].startswith("celery -A config worker")
    assert commands["beat"].startswith("celery -A config beat")
    assert commands["flower"].startswith("celery -A config flower")
    assert "migrate" in commands["web"]


def test_the_worker_consumes_the_default_queue(compose):
    queues = re.search(r"-Q (\S+)", compose["services"]["worker"]["command"]).group(1).split(",")
    assert settings.CELERY_TASK_DEFAULT_QUEUE in queues


def test_every_setting_in_the_environment_is_read_by_the_settings(compose):
    source = settings_source()
    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
        for key in env:
            if key.startswith("FLOWER_") or key == "DJANGO_SETTINGS_MODULE":
                continue  # read by Flower itself / by Django
            assert f'"{key}"' in source, f"{name}: {key} is set in docker-compose.yml but no setting reads it"


def test_app_services_point_at_the_compose_database_and_redis(compose):
    env = compose["services"]["worker"]["environment"]
    assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"


def test_worker_beat_and_flower_wait_for_migrations(compose):
    for name in ("worker", "beat", "flower"):
        assert compose["services"][name]["depends_on"] == {"web": {"condition": "service_healthy"}}


def test_scale_out_is_possible(compose):
    worker = compose["services"]["worker"]
    # `--scale worker=N` fails on fixed names and host ports.
    assert "container_name" not in worker and "ports" not in worker
