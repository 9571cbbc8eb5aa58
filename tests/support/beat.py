"""A real celery beat in a subprocess (django-celery-beat's DatabaseScheduler), on the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from django.db import connection

from config.embedded_redis import die_with_parent

BASE_DIR = Path(__file__).resolve().parent.parent.parent


class BeatProcess:
    def __init__(self, *, name: str) -> None:
        self.name = name
        self.log = BASE_DIR / "var" / f"test-beat-{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> BeatProcess:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "CHORDFLOW_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
        }
        self.log.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "INFO", "--pidfile=",
            "-S", "django_celery_beat.schedulers:DatabaseScheduler",
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                argv, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, process_group=0, preexec_fn=die_with_parent,
            )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
