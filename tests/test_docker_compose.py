"""No Docker engine runs here: the compose file is read against the project, and its services' commands
run as local processes under production settings."""

import re
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
import yaml
from django.conf import settings

from config.embedded_redis import free_port
from tests.support import compose as compose_support
from tests.support.flower import broker_page_depths, flower_login
from tests.support.web import assert_static_files_are_served, fetch

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


def test_web_and_flower_are_published_on_loopback_only_since_the_proxy_header_is_trusted(compose):
    """Only the TLS proxy on the host reaches them, so no client can send X-Forwarded-Proto itself."""
    assert compose["services"]["web"]["environment"]["CHORDFLOW_BEHIND_PROXY"] == "${CHORDFLOW_BEHIND_PROXY:-1}"
    for name in ("web", "flower"):
        assert all(port.startswith("127.0.0.1:") for port in compose["services"][name]["ports"]), name


def test_scale_out_is_possible(compose):
    worker = compose["services"]["worker"]
    # `--scale worker=N` fails on fixed names and host ports.
    assert "container_name" not in worker and "ports" not in worker


# --- the services' own commands, started under production settings ---------------------------------
# What `docker compose up` would interpolate from .env or the shell.
SHELL = {
    "DJANGO_SECRET_KEY": "compose-test-" + "k7Qz2xW9vLm4pR8sT1nB6yH3jD5fG0aE" * 2,
    "DJANGO_ALLOWED_HOSTS": "chordflow.example.com",
    "CHORDFLOW_BASE_URL": "https://chordflow.example.com",
    "FLOWER_BASIC_AUTH": "ops:a-flower-password",
}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def healthcheck_argv(test: list[str]) -> list[str]:
    kind, *rest = test
    return rest if kind == "CMD" else ["sh", "-c", rest[0]]


@pytest.fixture
def stack(compose, tmp_path, transactional_db):
    """Start a service as compose would: its command and environment, with the test stack's database and
    Redis (a Redis database of its own, so its beat's ticks never reach the suite's worker)."""
    redis_url = compose_support.redis_url_with_db(settings.REDIS_URL, 15)
    static_root = tmp_path / "static"  # the image's collected files (built below)
    overrides = {
        "DATABASE_URL": compose_support.test_database_url(),
        "REDIS_URL": redis_url,
        "DJANGO_STATIC_ROOT": str(static_root),
    }
    flush = redis.Redis.from_url(redis_url)
    flush.flushdb()
    started = []

    def start(name: str, published: int | None = None, port: int | None = None):
        service = compose["services"][name]
        env = {**compose_support.service_environment(service, SHELL), **overrides}
        argv = shlex.split(service["command"])
        if published:
            argv = compose_support.with_port(argv, published, port)
        process = compose_support.ServiceProcess(name, argv, env, tmp_path / f"{name}.log").start()
        started.append(process)
        return process

    def build_static() -> None:
        """The Dockerfile's collectstatic step, as the image build runs it (with its own environment)."""
        dockerfile = (BASE_DIR / compose["services"]["web"]["build"]["dockerfile"]).read_text()
        step = next(line for line in dockerfile.splitlines() if line.startswith("RUN") and "collectstatic" in line)
        env = compose_support.process_environment({"DJANGO_SETTINGS_MODULE": "config.settings.production", **overrides})
        built = subprocess.run(["sh", "-c", step[len("RUN") :]], cwd=BASE_DIR, env=env, capture_output=True, text=True)
        assert built.returncode == 0, built.stderr[-3000:]

    start.build_static, start.static_root = build_static, static_root
    yield start
    for process in reversed(started):
        process.stop()
    flush.flushdb()
    flush.close()


def test_the_compose_services_start_under_production_settings_and_web_becomes_healthy(compose, stack):
    services = compose["services"]
    web_port, flower_port = free_port(), free_port()
    stack.build_static()
    web = stack("web", 8000, web_port)
    check = compose_support.with_port(healthcheck_argv(services["web"]["healthcheck"]["test"]), 8000, web_port)
    env = compose_support.process_environment(compose_support.service_environment(services["web"], SHELL))
    deadline = time.monotonic() + 60
    while True:  # as compose does: run the healthcheck until it passes (worker, beat and flower wait for it)
        result = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
        if result.returncode == 0:
            break
        assert web.process.poll() is None, f"web exited; log:\n{web.output()[-3000:]}"
        assert time.monotonic() < deadline, f"web never became healthy: {result.stderr[-1500:]}\n{web.output()[-1500:]}"
        time.sleep(0.5)

    site = f"http://127.0.0.1:{web_port}/accounts/login/"
    behind_proxy = {"Host": "chordflow.example.com", "X-Forwarded-Proto": "https"}
    with urllib.request.urlopen(urllib.request.Request(site, headers=behind_proxy), timeout=10) as page:
        assert page.status == 200 and "Strict-Transport-Security" in page.headers
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as plain:
        opener.open(urllib.request.Request(site, headers={"Host": "chordflow.example.com"}), timeout=10)
    assert (
        plain.value.code == 301 and plain.value.headers["Location"] == "https://chordflow.example.com/accounts/login/"
    )
    assert_static_files_are_served(f"http://127.0.0.1:{web_port}", behind_proxy, collected=stack.static_root)

    worker, beat = stack("worker"), stack("beat")
    flower = stack("flower", 5555, flower_port)
    worker.wait_for(" ready.")
    beat.wait_for("beat: Starting...", "Sending due task chordflow-schedules")
    worker.wait_for("executions.schedule_tick", "succeeded")  # beat's tick went through Redis to the worker
    flower.wait_for("Visit me at")
    flower_url = f"http://127.0.0.1:{flower_port}"
    with urllib.request.urlopen(f"{flower_url}/healthcheck", timeout=10) as answer:
        assert answer.read() == b"OK"
    assert fetch(f"{flower_url}/", {})[0] == 401  # FLOWER_BASIC_AUTH is in force
    status, _, page = fetch(f"{flower_url}/broker", flower_login(SHELL["FLOWER_BASIC_AUTH"]))
    assert status == 200 and "default" in broker_page_depths(page.decode()), page[-2000:]
    status, _, metrics = fetch(f"{flower_url}/metrics", {})  # for Prometheus: not behind the login
    assert status == 200 and b"# TYPE flower_events_total counter" in metrics
    for process in (web, worker, beat, flower):
        assert process.process.poll() is None, f"{process.name} exited:\n{process.output()[-3000:]}"
        assert "Traceback" not in process.output(), f"{process.name}:\n{process.output()[-3000:]}"
