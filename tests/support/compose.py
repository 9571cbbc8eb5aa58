"""Run docker-compose.yml's services without Docker: its commands and environment, as local processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from django.db import connection

from config.embedded_redis import die_with_parent

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VARIABLE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>\w+)")


def interpolate(value: str, shell: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR:?message}` and `$$`, against `shell`."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg")
        found = shell.get(name)
        unset = found is None or (found == "" and op and op.startswith(":"))
        if op and op.endswith("?") and unset:
            raise KeyError(f"docker-compose.yml: {name} must be set: {arg}")
        if op and op.endswith("-") and unset:
            return interpolate(arg, shell)
        return found or ""

    return VARIABLE.sub(one, value)


def service_environment(service: dict, shell: dict[str, str]) -> dict[str, str]:
    return {key: interpolate(str(value), shell) for key, value in (service.get("environment") or {}).items()}


def test_database_url() -> str:
    """The URL of the database the suite runs on, for processes that read DATABASE_URL."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"] or "", safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{credentials}@{host}/{db['NAME']}"


def redis_url_with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def with_port(args: list[str], published: int, port: int) -> list[str]:
    """The arguments with the container port replaced by a free one on this machine."""
    return [re.sub(rf"\b{published}\b", str(port), arg) for arg in args]


def process_environment(env: dict[str, str]) -> dict[str, str]:
    """The service's environment plus what the image gives (PATH to the project's Python, unbuffered output)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
    return {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "PYTHONUNBUFFERED": "1", **env}


class ServiceProcess:
    """One service's command as a process group in the project folder (the image's WORKDIR), logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.process: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=BASE_DIR, env=process_environment(self.env), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, process_group=0, preexec_fn=die_with_parent,
            )  # fmt: skip
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, *texts: str, timeout: float = 60) -> None:
        """Until every text is in the log; fail with the log's end if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while not all(text in self.output() for text in texts):
            exited = self.process.poll()
            if exited is not None or time.monotonic() > deadline:
                state = f"exited with {exited}" if exited is not None else f"still waiting after {timeout}s"
                raise AssertionError(f"{self.name} {state} for {texts}; log:\n{self.output()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM to the whole group (sh and what it started, a worker and its pool), SIGKILL to what is left."""
        if self.process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                continue
