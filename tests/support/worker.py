"""A real Celery worker in a subprocess (prefork, as in production), pointed at the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.db import connection

from config.celery_app import app
from config.embedded_redis import die_with_parent
from executions.dispatch import queue_depth

BASE_DIR = Path(__file__).resolve().parent.parent.parent
READY_TIMEOUT_SECONDS = 60


def start_celery(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A celery process (worker, beat, Flower) on the test settings and database, logging to `log_path`."""
    env = {
        **os.environ,
        **(env or {}),
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        # After pytest-django's setup, NAME is the test database's.
        "CHORDFLOW_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, process_group=0, preexec_fn=die_with_parent,
        )  # fmt: skip


def stop_group(process: subprocess.Popen | None, timeout: float = 10) -> None:
    """SIGTERM to a process started by `start_celery` and its group; SIGKILL if it outlives `timeout`."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class WorkerProcess:
    """Start, stop or kill -9 one worker; `name` makes its node name unique for ping."""

    def __init__(
        self,
        *,
        name: str = "test",
        concurrency: int = 2,
        queues: str = "default",
        log: Path | None = None,
        env: dict[str, str] | None = None,
    ):
        self.name = name
        self.concurrency = concurrency
        self.queues = queues
        self.env = env
        self.log = log or BASE_DIR / "var" / f"test-worker-{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def node(self) -> str:
        return f"{self.name}@chordflow-test"

    def start(self) -> WorkerProcess:
        argv = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "prefork",
            "-c", str(self.concurrency), "-Q", self.queues, "-n", self.node, "-l", "INFO",
            "--without-mingle", "--without-gossip", "-I", "tests.support.worker_tasks",
        ]  # fmt: skip
        self.process = start_celery(argv, self.log, self.env)
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.node} exited with {self.process.returncode}; see {self.log}")
            if app.control.ping(destination=[self.node], timeout=0.5):
                return
        raise RuntimeError(f"worker {self.node} did not answer a ping in {READY_TIMEOUT_SECONDS}s; see {self.log}")

    def is_idle(self) -> bool:
        """Nothing waiting in its queues, running or reserved: what was sent to it has finished."""
        if any(queue_depth(queue) for queue in self.queues.split(",")):
            return False
        inspect = app.control.inspect(destination=[self.node], timeout=2, limit=1)
        return inspect.active() == {self.node: []} and inspect.reserved() == {self.node: []}

    def wait_idle(self, timeout: float = 20, *, strict: bool = True) -> bool:
        """Wait until the worker is idle: what a negative assertion must wait for, instead of a sleep.

        Not `strict`: give up quietly after `timeout` (a test's teardown must not fail for a slow task).
        """
        deadline = time.monotonic() + timeout
        while not self.is_idle():
            if time.monotonic() > deadline:
                if strict:
                    raise AssertionError(f"worker {self.node} still busy after {timeout}s")
                return False
            time.sleep(0.05)
        return True

    def stop(self, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # warm shutdown
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._kill_group()

    def kill(self) -> None:
        """kill -9 the whole worker: the main process and its pool, as a crash or the OOM killer would."""
        self._kill_group()
        self.process.wait()

    def _kill_group(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
