"""Test settings: a file database the worker process can share, fast hashing, captured email."""

import os

from .base import *  # noqa: F403
from .base import DATABASES, VAR_DIR

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

# A worker started by the tests runs in its own process and must open the test database, not the
# development one: the test fixture passes its name here.
if os.environ.get("CHORDFLOW_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["CHORDFLOW_TEST_DB_NAME"]
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # In-memory SQLite cannot be shared with a worker process: test on a file.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
