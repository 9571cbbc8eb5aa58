"""A real daphne web server in a subprocess, on the test settings and the test database."""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from config.embedded_redis import free_port
from tests.support.worker import BASE_DIR, start_celery

READY_TIMEOUT_SECONDS = 60


@contextlib.contextmanager
def daphne_server(log: Path | None = None) -> Iterator[str]:
    """Serve config.asgi as `make run` does; yields its base URL. Needs `django_db(transaction=True)`."""
    port = free_port()
    log = log or BASE_DIR / "var" / "test-daphne.log"
    argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    process = start_celery(argv, log)  # the helper sets the test settings and database for any process
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"daphne exited with {process.returncode}; see {log}")
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"daphne did not answer in {READY_TIMEOUT_SECONDS}s; see {log}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except Exception:
            process.kill()
            process.wait()


def fetch(url: str, headers: dict) -> tuple[int, dict, bytes]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
        return answer.status, answer.headers, answer.read()


def assert_static_files_are_served(base: str, headers: dict | None = None, *, hashed: bool = True) -> None:
    """The admin's stylesheet (in production by its hashed name, cached for good) and every script of
    the API docs page, through a running server: daphne serves no files of its own."""
    headers = headers or {}
    _, _, login = fetch(f"{base}/admin/login/", headers)
    name = r"base\.[0-9a-f]{12}\.css" if hashed else r"base\.css"
    stylesheet = re.search(rf'href="(/static/admin/css/{name})"', login.decode())
    assert stylesheet, f"the admin links no {name}: are static files collected with a manifest?"
    status, answer, body = fetch(base + stylesheet.group(1), headers)
    assert status == 200 and answer["Content-Type"].startswith("text/css") and b"--body-bg" in body
    if hashed:
        assert "immutable" in answer["Cache-Control"]
    _, _, docs = fetch(f"{base}/api/docs/", headers)
    scripts = re.findall(r'<script[^>]* src="([^"]+)"', docs.decode())
    assert scripts, "the docs page references no script"
    for src in scripts:
        status, answer, body = fetch(base + src, headers)
        assert status == 200 and "javascript" in answer["Content-Type"] and body, src
