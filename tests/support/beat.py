"""A real celery beat in a subprocess (django-celery-beat's DatabaseScheduler), on the test database."""

from __future__ import annotations

import subprocess
import sys

from tests.support.worker import BASE_DIR, start_celery, stop_group


class BeatProcess:
    def __init__(self, *, name: str) -> None:
        self.log = BASE_DIR / "var" / f"test-beat-{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> BeatProcess:
        argv = [
            sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "INFO", "--pidfile=",
            "-S", "django_celery_beat.schedulers:DatabaseScheduler",
        ]  # fmt: skip
        self.process = start_celery(argv, self.log)
        return self

    def stop(self) -> None:
        stop_group(self.process)
