"""`make run`: the whole development stack (Redis, web, worker, beat, Flower) as one foreground command.

It prints "Chordflow is running" once the worker answers a ping and the web server and Flower accept
connections. While it runs, it records its Redis and web address under var/ (config/devrecord.py),
so that `manage.py` and `celery` commands beside it use the same Redis.

Ctrl-C or SIGTERM stops every child: the worker gets a warm shutdown (it finishes its running tasks),
anything still alive after CHORDFLOW_STOP_TIMEOUT seconds is killed with its process group, and the
embedded Redis stops last. Each child also dies with this process, so none outlives a kill -9.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from config import devrecord
from config.embedded_redis import die_with_parent, ensure_redis_url

BASE_DIR = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = BASE_DIR / "workflows" / "examples"
READY_TIMEOUT_SECONDS = 120
WORKER_NODE = "chordflow@%h"
# Flower's Broker page then lists every queue on our Redis with its depth (config/flower.py).
FLOWER_CONF = "--conf=config/flowerconfig.py"
# Printed by celery when it runs as root (as in containers): noise for a development stack.
QUIET_WARNINGS = "ignore:You're running the worker with superuser privileges"


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]


def env_port(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        sys.exit(f"{name}={raw!r} is not a port number")
    return int(raw)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def services(*, host: str, web_port: int, flower_port: int, var_dir: Path) -> list[Service]:
    python = sys.executable
    celery = [python, "-m", "celery", "-A", "config", "--quiet"]  # no banners: one line per event
    queues = os.environ.get("CHORDFLOW_WORKER_QUEUES", "default")
    concurrency = os.environ.get("CHORDFLOW_WORKER_CONCURRENCY", str(os.cpu_count() or 1))
    return [
        Service("web", [python, "-m", "daphne", "-b", host, "-p", str(web_port), "config.asgi:application"]),
        Service("worker", [*celery, "worker", "-E", "-l", "INFO", "-Q", queues, "-c", concurrency, "-n", WORKER_NODE]),
        Service("beat", [*celery, "beat", "-l", "INFO", "-s", str(var_dir / "celerybeat-schedule")]),
        Service("flower", [*celery, "flower", FLOWER_CONF, f"--address={host}", f"--port={flower_port}"]),
    ]


def prepare_database(var_dir: Path) -> None:
    """Migrate, create the development superuser, load the example workflows."""
    import django
    from django.conf import settings
    from django.core.management import call_command, get_commands

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    print(f"Database: {settings.DATABASES['default']['NAME']} (migrated)")
    username = getattr(settings, "CHORDFLOW_DEV_SUPERUSER", None)
    if username:
        print_superuser(username, var_dir / "dev-superuser.json")
    if "load_workflows" in get_commands() and EXAMPLES_DIR.is_dir():
        call_command("load_workflows", str(EXAMPLES_DIR))
    from django.db import connections

    connections.close_all()


def print_superuser(username: str, credentials_file: Path) -> None:
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    if not user_model.objects.filter(username=username).exists():
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=username, email="admin@localhost", password=password)
        credentials_file.write_text(json.dumps({"username": username, "password": password}))
    if credentials_file.exists():
        password = json.loads(credentials_file.read_text())["password"]
        print(f"Development superuser: {username} / {password}  (stored in {credentials_file.name})")
    else:
        print(f"Development superuser: {username} (its password was changed; not shown)")


class Supervisor:
    """Starts the services, watches them, and stops them all when one dies or a stop is asked."""

    def __init__(self, stop_timeout: float) -> None:
        self.stop_timeout = stop_timeout
        self.children: dict[str, subprocess.Popen] = {}
        self.stop_requested = False

    def request_stop(self, signum: int, frame: object) -> None:
        self.stop_requested = True

    def start(self, service: Service) -> None:
        # Own process group: the terminal's Ctrl-C reaches only us, and we stop each child in order
        # (a SIGINT straight to a prefork pool would kill its processes mid-task).
        self.children[service.name] = subprocess.Popen(
            service.argv, cwd=BASE_DIR, stdin=subprocess.DEVNULL, process_group=0, preexec_fn=die_with_parent
        )

    def exited(self) -> str | None:
        for name, child in self.children.items():
            if child.poll() is not None:
                print(f"devstack: {name} exited with code {child.returncode}; stopping the rest", flush=True)
                return name
        return None

    def wait_until(self, ready, what: str) -> bool:
        """Poll `ready()` until it holds; False when a child exits, a stop is asked, or it takes too long."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not self.stop_requested and self.exited() is None:
            if ready():
                return True
            if time.monotonic() > deadline:
                print(f"devstack: {what} not ready after {READY_TIMEOUT_SECONDS}s; stopping", flush=True)
                return False
            time.sleep(0.2)
        return False

    def watch(self) -> int:
        while not self.stop_requested:
            if self.exited() is not None:
                return 1
            time.sleep(0.2)
        return 0

    def stop_all(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)  # the worker's warm shutdown
        deadline = time.monotonic() + self.stop_timeout
        for name, child in self.children.items():
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"devstack: {name} did not stop in {self.stop_timeout:.0f}s; killing it", flush=True)
        for child in self.children.values():
            try:
                os.killpg(child.pid, signal.SIGKILL)  # whatever is left of the group, pool processes too
            except ProcessLookupError:
                pass
            child.wait()


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def worker_answers() -> bool:
    from celery.utils.nodenames import host_format

    from config.celery_app import app

    return bool(app.control.ping(destination=[host_format(WORKER_NODE)], timeout=0.5))


def run() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ["PYTHONUNBUFFERED"] = "1"
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), QUIET_WARNINGS]))
    host = "127.0.0.1"
    web_port = env_port("CHORDFLOW_WEB_PORT", 8000)
    flower_port = env_port("CHORDFLOW_FLOWER_PORT", 5555)
    for name, port in (("CHORDFLOW_WEB_PORT", web_port), ("CHORDFLOW_FLOWER_PORT", flower_port)):
        if port_in_use(host, port):
            sys.exit(f"Port {port} on {host} is in use: stop what uses it, or set {name} to another port")
    var_dir = Path(os.environ.get("CHORDFLOW_VAR_DIR", BASE_DIR / "var"))
    var_dir.mkdir(parents=True, exist_ok=True)

    supervisor = Supervisor(stop_timeout=float(os.environ.get("CHORDFLOW_STOP_TIMEOUT", "30")))
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)

    redis = ensure_redis_url(var_dir / "redis")
    web_url = f"http://{host}:{web_port}"
    code = 0
    try:
        devrecord.record(var_dir, redis_url=os.environ["REDIS_URL"], web_url=web_url)
        print(f"Redis: {os.environ['REDIS_URL']}" + (" (embedded)" if redis else ""), flush=True)
        prepare_database(var_dir)
        if supervisor.stop_requested:
            return 0
        # Flower last, once the worker answers: before, it warns that its inspections failed.
        *first, flower = services(host=host, web_port=web_port, flower_port=flower_port, var_dir=var_dir)
        for service in first:
            supervisor.start(service)
        if not supervisor.wait_until(worker_answers, "the worker") or not supervisor.wait_until(
            lambda: accepts(host, web_port), "the web server"
        ):
            return 0 if supervisor.stop_requested else 1
        supervisor.start(flower)
        if not supervisor.wait_until(lambda: accepts(host, flower_port), "Flower"):
            return 0 if supervisor.stop_requested else 1
        print(
            f"\nChordflow is running:\n"
            f"  web     {web_url}/  (admin: /admin/, API: /api/, health: /healthz)\n"
            f"  flower  http://{host}:{flower_port}/\n"
            f"Press Ctrl-C to stop.\n",
            flush=True,
        )
        code = supervisor.watch()
    finally:
        supervisor.stop_all()
        devrecord.forget(var_dir)
        if redis:
            redis.stop()
        print("devstack: stopped", flush=True)
    return code


if __name__ == "__main__":
    if sys.argv[1:] != ["run"]:
        sys.exit("usage: python -m config.devstack run")
    sys.exit(run())
