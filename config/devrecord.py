"""What a running `make run` records under var/, so that commands beside it find its Redis and web address.

Each record holds the address and the pid of the `make run` that wrote it, readable by its owner only.
A record whose `make run` is gone (killed with -9, so it could not forget it) is ignored, even when
something else answers on its port by now: a command must never talk to another program's Redis.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

# Nothing listens on port 1 (tcpmux) of a development machine: without a Redis, use fails at once
# with "connection refused" (after local settings said why) instead of reaching another app's Redis.
NO_REDIS_URL = "redis://127.0.0.1:1/0"


def _file(var_dir: Path, name: str) -> Path:
    return Path(var_dir) / name / "url"


def record(var_dir: Path, *, redis_url: str, web_url: str, pid: int | None = None) -> None:
    for name, url in (("redis", redis_url), ("web", web_url)):
        path = _file(var_dir, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"{url}\n{pid or os.getpid()}\n")
        path.chmod(0o600)  # an older record may have been made with wider permissions


def forget(var_dir: Path) -> None:
    for name in ("redis", "web"):
        _file(var_dir, name).unlink(missing_ok=True)


def _read(var_dir: Path, name: str) -> tuple[str | None, bool]:
    """(the recorded address, whether the `make run` that recorded it still runs)."""
    try:
        lines = _file(var_dir, name).read_text().split()
    except OSError:
        return None, False
    if not lines:
        return None, False
    try:
        pid = int(lines[1])
    except (IndexError, ValueError):
        return lines[0], False  # a record without its writer's pid cannot be trusted
    return lines[0], _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def answers(url: str, timeout: float = 0.5) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout):
            return True
    except OSError:
        return False


def development_redis_url(var_dir: Path) -> str:
    """The Redis of the `make run` next to this command; none running: NO_REDIS_URL, and a warning that says so."""
    url, alive = _read(var_dir, "redis")
    if url and alive and answers(url):
        return url
    where = _file(var_dir, "redis")
    if url and not alive:
        why = f"{where} names {url}, but the `make run` that recorded it was killed"
    elif url:
        why = f"{where} names {url}, which does not answer"
    else:
        why = f"no `make run` recorded one in {where}"
    print(
        f"Chordflow: no Redis for this command ({why}). It can use the database, but tasks it starts will not "
        "run: start `make run` (then run this beside it), or set REDIS_URL.",
        file=sys.stderr,
    )
    return NO_REDIS_URL


def development_web_url(var_dir: Path, port: int) -> str:
    """The address of the dev web server: the one a running `make run` recorded, else 127.0.0.1 on `port`."""
    url, alive = _read(var_dir, "web")
    return url if url and alive else f"http://127.0.0.1:{port}"
