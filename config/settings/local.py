"""Development settings: DEBUG, console email, readable logs."""

from .base import *  # noqa: F403
from .base import env_bool

DEBUG = env_bool("DJANGO_DEBUG", True)
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
# The development superuser that `make run` creates and prints; never in production.
CHORDFLOW_DEV_SUPERUSER = "admin"
