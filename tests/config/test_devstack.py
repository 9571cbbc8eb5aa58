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
        assert wait_for(f"http://127.0.0.1:{flower_port}/healthcheck", devstack, log)[0] == 200

        family = psutil.Process(devstack.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        for expected in ("redis-server", "daphne", "worker", "beat", "flower"):
            assert expected in names
        output = log.read_text()
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
