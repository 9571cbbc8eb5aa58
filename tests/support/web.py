"""A real daphne web server in a subprocess, on the test settings and the test database."""

from __future__ import annotations

import contextlib
import json
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
STATIC_TAG = re.compile(r"""{%\s*static\s+['"]([^'"]+)['"]\s*%}""")


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
    """Status, headers and body, also of an error (so that an assertion can name the file)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def template_static_names() -> list[str]:
    """Every file our templates link with `{% static %}` (the live pages' scripts and stylesheet)."""
    templates = [*BASE_DIR.glob("templates/**/*.html"), *BASE_DIR.glob("*/templates/**/*.html")]
    return sorted({name for path in templates for name in STATIC_TAG.findall(path.read_text())})


def assert_static_files_are_served(base: str, headers: dict | None = None, *, collected: Path | None = None) -> None:
    """The admin's stylesheet, every script of the API docs page and every file our templates link,
    through a running server: daphne serves no files of its own. With `collected` (production's
    STATIC_ROOT) they are served by their hashed names and cached for good; without, from the apps'
    folders under their own names."""
    headers = headers or {}
    hashed = collected is not None
    status, _, login = fetch(f"{base}/admin/login/", headers)
    assert status == 200, f"the admin's sign-in page answered {status}"
    name = r"base\.[0-9a-f]{12}\.css" if hashed else r"base\.css"
    stylesheet = re.search(rf'href="(/static/admin/css/{name})"', login.decode())
    assert stylesheet, f"the admin links no {name}: are static files collected with a manifest?"
    status, answer, body = fetch(base + stylesheet.group(1), headers)
    assert status == 200, f"{stylesheet.group(1)} answered {status}: nothing serves static files"
    assert answer["Content-Type"].startswith("text/css") and b"--body-bg" in body
    if hashed:
        assert "immutable" in answer["Cache-Control"]
    status, _, docs = fetch(f"{base}/api/docs/", headers)
    assert status == 200, f"the API docs page answered {status}"
    scripts = re.findall(r'<script[^>]* src="([^"]+)"', docs.decode())
    assert scripts, "the docs page references no script"
    for src in scripts:
        status, answer, body = fetch(base + src, headers)
        assert status == 200 and "javascript" in answer["Content-Type"] and body, src
    ours = template_static_names()
    assert ours, "no template links a static file: has the {% static %} pattern changed?"
    paths = json.loads((collected / "staticfiles.json").read_text())["paths"] if hashed else {}
    for name in ours:
        assert not hashed or name in paths, f"a template links {name}, which collectstatic did not collect"
        status, answer, body = fetch(f"{base}/static/{paths.get(name, name)}", headers)
        kind = {".js": "javascript", ".css": "text/css"}.get(Path(name).suffix, "")
        assert status == 200 and kind in answer["Content-Type"] and body, name
        if hashed:
            assert "immutable" in answer["Cache-Control"], name
