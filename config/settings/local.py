"""Development settings: DEBUG, console email, readable logs."""

from .base import *  # noqa: F403
from .base import env_bool, env_list, env_str

DEBUG = env_bool("DJANGO_DEBUG", True)
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
# The development superuser that `make run` creates and prints; never in production.
CHORDFLOW_DEV_SUPERUSER = "admin"
# Workflows may call services on this machine (loopback) while developing; never in production.
CHORDFLOW_HTTP_ALLOWED_NETWORKS = env_list("CHORDFLOW_HTTP_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
# Flower as `make run` starts it: the admin links a step to its task there.
CHORDFLOW_FLOWER_URL = env_str("CHORDFLOW_FLOWER_URL", "http://127.0.0.1:5555")
