"""A pytest plugin loaded before Django: gives the suite a real Redis (embedded unless REDIS_URL is set)."""

import os
from pathlib import Path

import pytest

# Importing `config` loads the Celery app, which would default the settings to local ones.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

from config.embedded_redis import ensure_redis_url

BASE_DIR = Path(__file__).resolve().parent.parent
_server = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    """Runs before pytest-django imports the settings, which read REDIS_URL."""
    global _server
    var_dir = Path(os.environ.get("CHORDFLOW_VAR_DIR", BASE_DIR / "var"))
    _server = ensure_redis_url(var_dir / "redis")


def pytest_unconfigure(config):
    if _server is not None:
        _server.stop()
