"""A real Flower in a subprocess, started as `make run` starts it, on the test broker."""

from __future__ import annotations

import base64
import re
import subprocess
import time
from pathlib import Path

from config import devstack
from config.embedded_redis import free_port
from tests.support.web import fetch
from tests.support.worker import BASE_DIR, start_celery, stop_group

READY_TIMEOUT_SECONDS = 60
# What Flower 2.2's /metrics serves (flower/events.py): series name -> (type, labels).
FLOWER_SERIES = {
    "flower_events_total": ("counter", {"worker", "type", "task"}),
    "flower_task_runtime_seconds": ("histogram", {"worker", "task"}),
    "flower_task_prefetch_time_seconds": ("gauge", {"worker", "task"}),
    "flower_worker_prefetched_tasks": ("gauge", {"worker", "task"}),
    "flower_worker_online": ("gauge", {"worker"}),
    "flower_worker_number_of_currently_executing_tasks": ("gauge", {"worker"}),
}
# A row of the Broker page's queue table: the queue's name, then its Messages.
QUEUE_ROW = re.compile(r'<tr id="[^"]*">\s*<td>([^<]+)</td>\s*<td[^>]*>([\d,]+)</td>')


class FlowerProcess:
    """`basic_auth` ("user:password") is given as compose gives it: in FLOWER_BASIC_AUTH."""

    def __init__(self, *, name: str, basic_auth: str | None = None) -> None:
        self.basic_auth = basic_auth
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = BASE_DIR / "var" / f"test-flower-{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> FlowerProcess:
        services = devstack.services(host="127.0.0.1", web_port=0, flower_port=self.port, var_dir=Path("var"))
        argv = next(service.argv for service in services if service.name == "flower")
        env = {"FLOWER_BASIC_AUTH": self.basic_auth} if self.basic_auth else {}
        self.process = start_celery(argv, self.log, env)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"Flower exited with {self.process.returncode}; see {self.log}")
            try:
                if self.get("/healthcheck")[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Flower did not answer in {READY_TIMEOUT_SECONDS}s; see {self.log}")
            time.sleep(0.1)

    def get(self, path: str, *, login: str | None = None) -> tuple[int, dict, bytes]:
        """GET `path`, with basic auth when `login` ("user:password") is given."""
        return fetch(self.url + path, flower_login(login) if login else {})

    def stop(self) -> None:
        stop_group(self.process)


def flower_login(login: str) -> dict[str, str]:
    """The header that signs in to a Flower with basic auth `login` ("user:password")."""
    return {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()}


def broker_page_depths(html: str) -> dict[str, int]:
    """Queue name -> Messages, from the rows of Flower's Broker page."""
    return {name: int(count.replace(",", "")) for name, count in QUEUE_ROW.findall(html)}
