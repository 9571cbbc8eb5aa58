"""Benchmark settings: production-like (no DEBUG), quiet logs; the benchmark sets the database and Redis."""

from .base import *  # noqa: F403

DEBUG = False
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
