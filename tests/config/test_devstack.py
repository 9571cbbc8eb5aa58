"""`make run` end to end: the stack comes up on an embedded Redis, serves /healthz, and stops cleanly."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from config.embedded_redis import free_port
from tests.support.flower import broker_page_depths
from tests.support.web import assert_static_files_are_served

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"devstack exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return get(url)
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer in {timeout}s:\n{log.read_text()[-3000:]}")


def test_make_run_serves_healthz_and_stops_on_sigint_leaving_no_process(tmp_path):
    web_port, flower_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(
        CHORDFLOW_VAR_DIR=str(tmp_path),
        CHORDFLOW_WEB_PORT=str(web_port),
        CHORDFLOW_FLOWER_PORT=str(flower_port),
        CHORDFLOW_WORKER_CONCURRENCY="1",
    )
    log = tmp_path / "devstack.log"
    with open(log, "wb") as out:
        devstack = subprocess.Popen(
            [sys.executable, "-m", "config.devstack", "run"],
            cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, process_group=0,
        )  # fmt: skip
    try:
        status, body = wait_for(f"http://127.0.0.1:{web_port}/healthz", devstack, log)
        assert status == 200, body
        assert json.loads(body)["checks"] == {"database": "ok", "broker": "ok"}
        assert_static_files_are_served(f"http://127.0.0.1:{web_port}")
        flower = f"http://127.0.0.1:{flower_port}"
        assert wait_for(f"{flower}/healthcheck", devstack, log)[0] == 200
        status, page = get(f"{flower}/broker")
        assert status == 200 and "default" in broker_page_depths(page.decode()), page[-2000:]
        status, metrics = get(f"{flower}/metrics")
        assert status == 200 and b"# TYPE flower_events_total counter" in metrics

        family = psutil.Process(devstack.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        for expected in ("redis-server", "daphne", "worker", "beat", "flower"):
            assert expected in names
        # "Chordflow is running" and the addresses come once the worker answers a ping: a moment later
        deadline = time.monotonic() + 60
        while "Chordflow is running" not in (output := log.read_text()):
            assert time.monotonic() < deadline, f"make run never said it was running:\n{output[-3000:]}"
            time.sleep(0.2)
        assert f"http://127.0.0.1:{web_port}/" in output and f"http://127.0.0.1:{flower_port}/" in output
        assert "Development superuser: admin / " in output
        assert "order-pipeline v1" in output  # the example workflows are loaded

        # Stop only once the worker is up, so that what is proved is a warm shutdown of a running worker.
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text():
            assert time.monotonic() < deadline, f"the worker did not get ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        devstack.send_signal(signal.SIGINT)
        assert devstack.wait(timeout=90) == 0
        _, alive = psutil.wait_procs(family, timeout=5)
        assert alive == [], f"left behind: {[p.pid for p in alive]}"
        assert "Warm shutdown" in log.read_text()
    finally:
        if devstack.poll() is None:
            os.killpg(devstack.pid, signal.SIGKILL)


# --- Beside a running `make run`: one stack for the tests below ------------------------------------


def devstack_env(var_dir: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(CHORDFLOW_VAR_DIR=str(var_dir), **extra)
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A `make run` on free ports; yields (web URL, var dir, log), its output read once it says it runs."""
    var_dir = tmp_path_factory.mktemp("devstack")
    web_port, flower_port = free_port(), free_port()
    env = devstack_env(
        var_dir,
        CHORDFLOW_WEB_PORT=str(web_port),
        CHORDFLOW_FLOWER_PORT=str(flower_port),
        CHORDFLOW_WORKER_CONCURRENCY="1",
    )
    log = var_dir / "devstack.log"
    with open(log, "wb") as out:
        devstack = subprocess.Popen(
            [sys.executable, "-m", "config.devstack", "run"],
            cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, process_group=0,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "Chordflow is running" not in log.read_text():
            assert devstack.poll() is None, f"devstack exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"devstack did not start:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{web_port}", var_dir, log
    finally:
        devstack.send_signal(signal.SIGINT)
        try:
            devstack.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(devstack.pid, signal.SIGKILL)


def manage(var_dir: Path, code: str, *, argv: list[str] | None = None) -> subprocess.CompletedProcess:
    """`make manage ARGS="shell -c …"` as a user types it beside `make run` (no REDIS_URL, no venv)."""
    argv = argv or ["make", "-s", "manage", f"ARGS=shell -c '{code}'"]
    return subprocess.run(argv, cwd=BASE_DIR, env=devstack_env(var_dir), capture_output=True, text=True, timeout=120)


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stdout.strip().splitlines()[-1]  # after Django's "N objects imported automatically"


def test_make_manage_beside_make_run_uses_its_redis(stack):
    _, var_dir, log = stack
    redis_url = log.read_text().split("Redis: ", 1)[1].split()[0]
    result = manage(var_dir, "from django.conf import settings; print(settings.CELERY_BROKER_URL)")
    assert result.returncode == 0, result.stderr
    assert last_line(result) == redis_url
    assert (var_dir / "redis" / "url").read_text().split()[0] == redis_url


def test_python_manage_py_works_without_an_activated_venv(stack):
    _, var_dir, log = stack
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else "python3"
    probe = subprocess.run([python, "-c", "import django"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip(f"{python} has Django: it cannot show a missing venv")
    code = "from django.conf import settings; print(settings.REDIS_URL)"
    result = manage(var_dir, code, argv=[python, "manage.py", "shell", "-c", code])
    assert result.returncode == 0, result.stderr
    assert last_line(result) == log.read_text().split("Redis: ", 1)[1].split()[0]


def test_manage_without_make_run_says_there_is_no_redis_and_never_uses_6379(tmp_path):
    result = manage(tmp_path, "from django.conf import settings; print(settings.CELERY_BROKER_URL)")
    assert result.returncode == 0, result.stderr
    assert "6379" not in result.stdout
    assert "no Redis" in result.stderr and "make run" in result.stderr and "REDIS_URL" in result.stderr


def test_approval_links_follow_the_web_port(stack):
    web_url, var_dir, _ = stack
    code = (
        "from approvals.models import Approval; from approvals.notifications import decision_url; "
        "print(decision_url(Approval(pk=7)))"
    )
    result = manage(var_dir, code)
    assert result.returncode == 0, result.stderr
    assert last_line(result) == f"{web_url}/approvals/7/decide/"


def test_running_is_printed_once_the_worker_is_ready(stack):
    _, _, log = stack
    output = log.read_text()
    assert " ready." in output.split("Chordflow is running")[0], output[-3000:]


def test_start_up_and_page_loads_print_one_readable_line_each(stack):
    web_url, _, log = stack
    time.sleep(5)  # beat ticks and sweeps every few seconds: none of them may print
    start = len(log.read_text())
    time.sleep(12)
    idle = log.read_text()[start:]
    assert idle.strip() == "", f"printed while idle:\n{idle}"

    start = len(log.read_text())
    assert get(f"{web_url}/static/admin/css/base.css")[0] == 200
    assert get(f"{web_url}/no-such-page/")[0] == 404
    assert get(f"{web_url}/admin/login/")[0] == 200
    time.sleep(1)
    lines = log.read_text()[start:].splitlines()
    for path in ("/static/admin/css/base.css", "/no-such-page/", "/admin/login/"):
        assert len([line for line in lines if path in line]) == 1, lines
    assert len(lines) == 3, lines

    startup = log.read_text()
    for noise in ("AXES: BEGIN", "Applying ", "SecurityWarning", "Registered tasks", "[tasks]", "mingle", "-------"):
        assert noise not in startup, f"{noise!r} in:\n{startup}"
