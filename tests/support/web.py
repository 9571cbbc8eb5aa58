"""A real daphne web server in a subprocess, on the test settings and the test database."""

from __future__ import annotations

import contextlib
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
