"""What a running `make run` records under var/, so that commands beside it find its Redis and web address."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

# Nothing listens on port 1 (tcpmux) of a development machine: without a Redis, use fails at once
# with "connection refused" (after local settings said why) instead of reaching another app's Redis.
NO_REDIS_URL = "redis://127.0.0.1:1/0"


def _file(var_dir: Path, name: str) -> Path:
    return Path(var_dir) / name / "url"


def record(var_dir: Path, *, redis_url: str, web_url: str) -> None:
    for name, url in (("redis", redis_url), ("web", web_url)):
        path = _file(var_dir, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(url + "\n")


def forget(var_dir: Path) -> None:
    for name in ("redis", "web"):
        _file(var_dir, name).unlink(missing_ok=True)


def _read(var_dir: Path, name: str) -> str | None:
    try:
        return _file(var_dir, name).read_text().strip() or None
    except OSError:
        return None


def answers(url: str, timeout: float = 0.5) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout):
            return True
    except OSError:
        return False


def development_redis_url(var_dir: Path) -> str:
    """The Redis of the `make run` next to this command; none running: NO_REDIS_URL, and a warning that says so."""
    url = _read(var_dir, "redis")
    if url and answers(url):
        return url
    where = _file(var_dir, "redis")
    why = f"{where} names {url}, which does not answer" if url else f"no `make run` recorded one in {where}"
    print(
        f"Chordflow: no Redis for this command ({why}). It can use the database, but tasks it starts will not "
        "run: start `make run` (then run this beside it), or set REDIS_URL.",
        file=sys.stderr,
    )
    return NO_REDIS_URL


def development_web_url(var_dir: Path, port: int) -> str:
    """The address of the dev web server: the one a running `make run` recorded, else 127.0.0.1 on `port`."""
    return _read(var_dir, "web") or f"http://127.0.0.1:{port}"
