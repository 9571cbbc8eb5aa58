"""Test settings: a file database the worker process can share, fast hashing, captured email."""

import os

from .base import *  # noqa: F403
from .base import DATABASES, VAR_DIR

DEBUG = False
WORKFLOWS_ACTION_MODULES = ["tests.support.actions"]
# Short repair delays, so crash tests heal in seconds (tests call the sweep themselves).
CHORDFLOW_REQUEUE_AFTER = 2
CHORDFLOW_TIMEOUT_GRACE = 1
CHORDFLOW_STALL_AFTER = 1
# A cancelled attempt that ignores the cancel is terminated after this (tests/executions/test_cancel.py).
CHORDFLOW_CANCEL_GRACE = 3
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# The http action's tests and examples talk to a scripted server on 127.0.0.1; the rest of loopback
# stays denied, and the destination tests take this exception away.
CHORDFLOW_HTTP_ALLOWED_NETWORKS = ["127.0.0.1/32"]
# /metrics is open, as in development; tests/executions/test_metrics.py checks the production rule.
CHORDFLOW_METRICS_REQUIRE_TOKEN = False

# A worker started by the tests runs in its own process and must open the test database, not the
# development one: the test fixture passes its name here.
if os.environ.get("CHORDFLOW_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["CHORDFLOW_TEST_DB_NAME"]
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # In-memory SQLite cannot be shared with a worker process: test on a file.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}

# API rate limits high enough that no test is throttled; tests/config/test_throttles.py lowers them.
CHORDFLOW_API_THROTTLE_ANON = "100000/minute"
CHORDFLOW_API_THROTTLE_USER = "100000/minute"
CHORDFLOW_API_THROTTLE_AUTH_FAILURES = "100000/minute"

# Static files are served from the apps' folders as they are (WHITENOISE_USE_FINDERS); none are
# collected, so WhiteNoise is not pointed at an empty STATIC_ROOT (it would warn in every process).
STATIC_ROOT = STATIC_ROOT if STATIC_ROOT.is_dir() else None  # noqa: F405
