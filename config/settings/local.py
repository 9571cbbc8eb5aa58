"""Development settings: DEBUG, console email, readable logs, and the Redis of the `make run` beside you."""

from config.devrecord import development_redis_url, development_web_url

from .base import *  # noqa: F403
from .base import CHANNEL_LAYERS, LOGGING, VAR_DIR, env_bool, env_int, env_list, env_str

DEBUG = env_bool("DJANGO_DEBUG", True)
WHITENOISE_AUTOREFRESH = DEBUG  # an edited script or stylesheet is served at once
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
# The development superuser that `make run` creates and prints; never in production.
CHORDFLOW_DEV_SUPERUSER = "admin"
# Workflows may call services on this machine (loopback) while developing; never in production.
CHORDFLOW_HTTP_ALLOWED_NETWORKS = env_list("CHORDFLOW_HTTP_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
# /metrics is open on a development machine (a token, when set, is still required).
CHORDFLOW_METRICS_REQUIRE_TOKEN = env_bool("CHORDFLOW_METRICS_REQUIRE_TOKEN", False)

# Without REDIS_URL, a command (manage.py, celery) uses the Redis that the running `make run` recorded
# in var/redis/url; with none running it says so and uses none, never whatever listens on 6379.
if not env_str("REDIS_URL"):
    REDIS_URL = development_redis_url(VAR_DIR)
    CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [REDIS_URL]
    CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
    CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)

# Approval emails link to the dev server where it really runs (`make run` records its address).
CHORDFLOW_BASE_URL = env_str("CHORDFLOW_BASE_URL") or development_web_url(VAR_DIR, env_int("CHORDFLOW_WEB_PORT", 8000))

# One readable line per event: daphne's access log is the line for a request (Django's own 404
# warnings and its DEBUG console handler would print two more); a task's line is its result; the
# beat's ticks and sweeps print only when they did something (config.logfilters).
LOGGING["loggers"].update(
    {
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.request": {"level": "ERROR"},
        "axes": {"level": "WARNING"},
        "celery.beat": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.worker.consumer": {"level": "WARNING"},
        "celery.app.trace": {"filters": ["idle_housekeeping"]},
        "kombu.mixins": {"level": "WARNING"},
        "django_celery_beat.schedulers": {"level": "WARNING"},
        "flower.command": {"level": "WARNING"},
    }
)
LOGGING["filters"]["idle_housekeeping"] = {"()": "config.logfilters.SkipIdleHousekeeping"}

# Flower as `make run` starts it: the admin links a step to its task there.
CHORDFLOW_FLOWER_URL = env_str("CHORDFLOW_FLOWER_URL") or f"http://127.0.0.1:{env_int('CHORDFLOW_FLOWER_PORT', 5555)}"

# Static files are served from the apps' folders as they are (WHITENOISE_USE_FINDERS); none are
# collected, so WhiteNoise is not pointed at an empty STATIC_ROOT (it would warn in every process).
STATIC_ROOT = STATIC_ROOT if STATIC_ROOT.is_dir() else None  # noqa: F405
