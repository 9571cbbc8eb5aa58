"""Settings shared by every environment; each value can be set from an environment variable."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("CHORDFLOW_VAR_DIR", BASE_DIR / "var"))

INSECURE_SECRET_KEY = "django-insecure-chordflow-development-key-change-me"  # noqa: S105 (refused in production)


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = env_str("DJANGO_SECRET_KEY", INSECURE_SECRET_KEY)
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",  # first, so that runserver serves ASGI
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_celery_results",
    "channels",
    "workflows",
    "executions",
    "approvals",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------
# DATABASE_URL selects the server (postgres://user@host:5432/name); without it, SQLite under var/.
# SQLite runs in WAL mode with a busy timeout and IMMEDIATE transactions, so the web server and the
# workers writing at once wait for each other instead of failing with "database is locked".
SQLITE_OPTIONS = {
    "timeout": 30,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
}


def database_from_env() -> dict:
    url = env_str("DATABASE_URL")
    if not url:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
    config = dj_database_url.parse(url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0))
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["OPTIONS"] = {**SQLITE_OPTIONS, **config.get("OPTIONS", {})}
    return config


DATABASES = {"default": database_from_env()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# Static files (the admin's CSS and JS, the API docs' scripts, the live pages' scripts) are served by
# WhiteNoise in every process that serves HTTP: daphne serves none itself. Production serves what
# `collectstatic` put in STATIC_ROOT (the image runs it) under hashed, compressed, cached-for-good names;
# development and the tests serve them from the apps' folders as they are (WHITENOISE_USE_FINDERS).
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT") or VAR_DIR / "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- Redis: broker, chord counters, Channels -----------------------------------------------------
# REDIS_URL points at a real server. `make run` and `make test` start an embedded one and set it
# when it is not given (config/embedded_redis.py).
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

# Live pages: each browser tab is one channel. `capacity` bounds what waits for a slow tab (the
# broadcast sends at most one batch per run per process every CHORDFLOW_BROADCAST_INTERVAL, so 1,000
# is minutes of backlog) and `expiry` drops what a dead tab never read. `group_expiry` stays above
# daphne's websocket timeout (24 h) so a long-open tab is closed and rejoins before its groups forget it.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 60, "group_expiry": 2 * 86400},
    }
}

# --- Celery ---------------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
# The result backend only carries chord joins (counted in Redis, no polling); the database rows are
# the record of every step. django-celery-results stays installed for audit use ("django-db").
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_RESULT_EXPIRES = env_int("CELERY_RESULT_EXPIRES", 24 * 3600)
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_TRACK_STARTED = False
CELERY_TASK_SEND_SENT_EVENT = True  # Flower shows queued tasks
CELERY_WORKER_SEND_TASK_EVENTS = True
# Step tasks are idempotent and acknowledged after they run; a killed worker's task is redelivered.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message reserved per process, so one long step never holds others back behind it.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Hard ceilings for any task; a step's own `timeout` is enforced per attempt below these.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 3600)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 3660)
# The longest countdown the engine ever gives a message (a retry delay). Longer waits are parked in
# the database and fired by the beat sweep. The broker's visibility_timeout must stay well above it
# and above the longest task, or Redis delivers the message a second time (kombu #337).
CHORDFLOW_MAX_COUNTDOWN = env_int("CHORDFLOW_MAX_COUNTDOWN", 300)
CELERY_BROKER_VISIBILITY_TIMEOUT = env_int("CELERY_BROKER_VISIBILITY_TIMEOUT", 4 * 3600)
if CELERY_BROKER_VISIBILITY_TIMEOUT <= max(CHORDFLOW_MAX_COUNTDOWN, CELERY_TASK_TIME_LIMIT) * 2:
    raise ImproperlyConfigured(
        "CELERY_BROKER_VISIBILITY_TIMEOUT must exceed twice both CHORDFLOW_MAX_COUNTDOWN and "
        "CELERY_TASK_TIME_LIMIT, or Redis redelivers delayed and long-running tasks"
    )
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT,
    "socket_connect_timeout": 5,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# --- The engine -----------------------------------------------------------------------------------
# Modules that register actions with @action; the web process and every worker import them.
WORKFLOWS_ACTION_MODULES = env_list("WORKFLOWS_ACTION_MODULES")
# A step's hard time limit is its timeout plus this; the soft limit (the timeout) stops it first.
CHORDFLOW_HARD_TIME_LIMIT_GRACE = env_int("CHORDFLOW_HARD_TIME_LIMIT_GRACE", 5)
# A task that finished a step runs the chain's next step itself (no message) while that step, its
# timeout and the hard grace included, fits in this many seconds past the first step's limits; 0: never.
CHORDFLOW_CHAIN_BUDGET = env_int("CHORDFLOW_CHAIN_BUDGET", 15)
# A cancelled step's attempt that is still running this many seconds after the cancel (its action
# did not stop when context.cancelled() turned true) has its pool process terminated, freeing it.
CHORDFLOW_CANCEL_GRACE = env_int("CHORDFLOW_CANCEL_GRACE", 5)
# The sweep (beat, every CHORDFLOW_SWEEP_INTERVAL s) re-publishes a step queued longer than
# CHORDFLOW_REQUEUE_AFTER s while its queue is empty, fails an attempt running past its timeout plus
# CHORDFLOW_TIMEOUT_GRACE s, and advances a run with nothing in flight for CHORDFLOW_STALL_AFTER s.
CHORDFLOW_SWEEP_INTERVAL = env_int("CHORDFLOW_SWEEP_INTERVAL", 10)
CHORDFLOW_REQUEUE_AFTER = env_int("CHORDFLOW_REQUEUE_AFTER", 120)
CHORDFLOW_TIMEOUT_GRACE = env_int("CHORDFLOW_TIMEOUT_GRACE", 30)
CHORDFLOW_STALL_AFTER = env_int("CHORDFLOW_STALL_AFTER", 30)
CHORDFLOW_BROADCAST_EVENTS = env_bool("CHORDFLOW_BROADCAST_EVENTS", True)
# Time between two sends of one process's events to Channels (ms): a busy process's events are batched.
CHORDFLOW_BROADCAST_INTERVAL = env_int("CHORDFLOW_BROADCAST_INTERVAL_MS", 250) / 1000
# A for_each wider than this is published by a worker task (about 0.8 ms a branch), not by the caller.
CHORDFLOW_INLINE_FAN_OUT = env_int("CHORDFLOW_INLINE_FAN_OUT", 200)
# A for_each's branches travel in chunks: one task claims, runs and records up to CHORDFLOW_FAN_OUT_CHUNK
# branches, and a step is cut into about CHORDFLOW_FAN_OUT_CHUNKS of them so that every worker process
# has some. A chunk records its branches' successes together at most CHORDFLOW_CHUNK_FLUSH_MS apart.
CHORDFLOW_FAN_OUT_CHUNK = env_int("CHORDFLOW_FAN_OUT_CHUNK", 100)
CHORDFLOW_FAN_OUT_CHUNKS = env_int("CHORDFLOW_FAN_OUT_CHUNKS", 32)
CHORDFLOW_CHUNK_FLUSH = env_int("CHORDFLOW_CHUNK_FLUSH_MS", 500) / 1000
# Beat runs the schedule tick this often (seconds): a cron fire starts within about this of its time.
CHORDFLOW_SCHEDULE_TICK = env_int("CHORDFLOW_SCHEDULE_TICK", 1)
CELERY_BEAT_SCHEDULE = {
    "chordflow-schedules": {"task": "executions.schedule_tick", "schedule": float(CHORDFLOW_SCHEDULE_TICK)},
    "chordflow-sweep": {"task": "executions.sweep", "schedule": float(CHORDFLOW_SWEEP_INTERVAL)},
    "chordflow-approvals-expire": {"task": "approvals.expire", "schedule": float(CHORDFLOW_SWEEP_INTERVAL)},
    "chordflow-retention": {"task": "executions.purge_runs", "schedule": 3600.0},
}
# Retention: finished runs older than this many days (a workflow's `retention_days` overrides it) are
# deleted by the chordflow-retention task, CHORDFLOW_RETENTION_BATCH runs per transaction.
CHORDFLOW_RETENTION_DAYS = env_int("CHORDFLOW_RETENTION_DAYS", 30)
CHORDFLOW_RETENTION_BATCH = env_int("CHORDFLOW_RETENTION_BATCH", 500)
# Metrics (executions/metrics.py, README "Metrics"): beat folds new run events into the totals and the
# metrics page's rollups every CHORDFLOW_METRICS_FOLD_INTERVAL s; a scrape of /metrics folds what is
# new first, at most CHORDFLOW_METRICS_SCRAPE_FOLD_BATCHES x 5,000 events. /metrics needs
# `Authorization: Bearer $CHORDFLOW_METRICS_TOKEN`; without a token it is closed (401) unless
# CHORDFLOW_METRICS_REQUIRE_TOKEN is off, as in the local and test settings.
CHORDFLOW_METRICS_TOKEN = env_str("CHORDFLOW_METRICS_TOKEN", "")
CHORDFLOW_METRICS_REQUIRE_TOKEN = env_bool("CHORDFLOW_METRICS_REQUIRE_TOKEN", True)
CHORDFLOW_METRICS_FOLD_INTERVAL = env_int("CHORDFLOW_METRICS_FOLD_INTERVAL", 15)
CHORDFLOW_METRICS_SCRAPE_FOLD_BATCHES = env_int("CHORDFLOW_METRICS_SCRAPE_FOLD_BATCHES", 4)
CELERY_BEAT_SCHEDULE["chordflow-metrics"] = {
    "task": "executions.metrics_fold",
    "schedule": float(CHORDFLOW_METRICS_FOLD_INTERVAL),
}
# Flower's address, for the admin's links to it and from a step to its task (none when empty).
CHORDFLOW_FLOWER_URL = env_str("CHORDFLOW_FLOWER_URL", "")
if CHORDFLOW_FLOWER_URL and not CHORDFLOW_FLOWER_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured(
        f"CHORDFLOW_FLOWER_URL={CHORDFLOW_FLOWER_URL!r} is not an address: start it with https://"
    )
# Links in approval emails point here.
CHORDFLOW_BASE_URL = env_str("CHORDFLOW_BASE_URL", "http://127.0.0.1:8000")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "chordflow@localhost")
# Celery's Django fixup closes the database connection after every task unless this is set: then
# every 2 x N tasks. Reopening cost a step a new connection and its PRAGMAs; a connection that broke
# is dropped after the task regardless (executions.signals).
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 100)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # workers log through LOGGING below, like the web process

# --- Limits: what one definition, input or step may cost (docs/security.md) -----------------------
# Steps in one definition, and the nesting depth of any JSON value (definitions, inputs, params, outputs).
CHORDFLOW_MAX_STEPS = env_int("CHORDFLOW_MAX_STEPS", 1000)
CHORDFLOW_MAX_JSON_DEPTH = env_int("CHORDFLOW_MAX_JSON_DEPTH", 64)
# Items one for_each may fan out to.
CHORDFLOW_MAX_FOR_EACH = env_int("CHORDFLOW_MAX_FOR_EACH", 100_000)
# A step's output (and a run's output), as JSON bytes; a bigger one fails the attempt for good.
CHORDFLOW_MAX_OUTPUT_BYTES = env_int("CHORDFLOW_MAX_OUTPUT_BYTES", 1024 * 1024)
# Any string or list an expression builds, and its value as JSON: characters, items and bytes.
CHORDFLOW_MAX_EXPRESSION_SIZE = env_int("CHORDFLOW_MAX_EXPRESSION_SIZE", 1024 * 1024)
# The params of all the branches of one for_each together, as JSON.
CHORDFLOW_MAX_FAN_OUT_BYTES = env_int("CHORDFLOW_MAX_FAN_OUT_BYTES", 64 * 1024 * 1024)
# Seconds one expression may compute before it fails with an ExpressionError (a for_each's branches'
# params together: this x (10 + branches / 1000)).
CHORDFLOW_EXPRESSION_TIMEOUT = float(env_str("CHORDFLOW_EXPRESSION_TIMEOUT", "1.0"))
# Step logs (`context.log`), per attempt: the lines kept, the bytes of one line (message and extra as
# JSON), the bytes of all kept lines; later lines are dropped and counted (workflows/action_log.py).
# A running attempt writes its buffered lines at most once per flush interval (seconds).
CHORDFLOW_STEP_LOG_MAX_LINES = env_int("CHORDFLOW_STEP_LOG_MAX_LINES", 1000)
CHORDFLOW_STEP_LOG_MAX_LINE_BYTES = env_int("CHORDFLOW_STEP_LOG_MAX_LINE_BYTES", 16 * 1024)
CHORDFLOW_STEP_LOG_MAX_BYTES = env_int("CHORDFLOW_STEP_LOG_MAX_BYTES", 1024 * 1024)
CHORDFLOW_STEP_LOG_FLUSH_INTERVAL = float(env_str("CHORDFLOW_STEP_LOG_FLUSH_INTERVAL", "1.0"))
# A start whose first steps fan out wider than this is planned and applied by a worker, not in the
# request that started it: the request answers at once with the run pending.
CHORDFLOW_START_INLINE_BRANCHES = env_int("CHORDFLOW_START_INLINE_BRANCHES", 1000)

# --- REST API -------------------------------------------------------------------------------------
CHORDFLOW_API_MAX_BODY_BYTES = env_int("CHORDFLOW_API_MAX_BODY_BYTES", 1024 * 1024)
REST_FRAMEWORK = {
    # Token first: an anonymous request gets 401 with `WWW-Authenticate: Token`, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["config.rest.HasModelPermissions"],
    "DEFAULT_PARSER_CLASSES": ["config.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "config.rest.exception_handler",
    "DEFAULT_METADATA_CLASS": None,  # OPTIONS: 405, as for any undocumented method
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Chordflow API",
    "DESCRIPTION": "Start, inspect, cancel and retry workflow runs; define workflows.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "executions.states.RunStatus",
        "StepStatusEnum": "executions.states.StepStatus",
    },
}

# --- Logging --------------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOG_FORMAT = env_str("LOG_FORMAT", "text")  # "text": one readable line per event; "json"
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} is not one of: text, json")

# A line logged during a step's attempt carries its run, step and attempt (config.logfilters): in
# text as `… executions.attempts [run=6f1c… step=fetch attempt=2]: …`, in JSON as fields.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"attempt": {"()": "config.logfilters.AttemptContext"}},
    "formatters": {
        "text": {
            "()": "config.logfilters.TextFormatter",
            "format": "%(asctime)s %(levelname)-7s %(name)s%(attempt_tag)s: %(message)s",
        },
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["attempt"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

# Hardening (http action)
# Where the http action may connect (workflows/netguard.py; README "The http action"). Every address
# a host resolves to is checked, on every redirect; the connection goes to the checked address.
# Non-public addresses (loopback, private, link-local and metadata, CGNAT, multicast, reserved, and
# their IPv4-mapped forms) are refused unless CHORDFLOW_HTTP_ALLOWED_NETWORKS names them (CIDRs).
CHORDFLOW_HTTP_ALLOWED_NETWORKS = env_list("CHORDFLOW_HTTP_ALLOWED_NETWORKS")
# More networks to refuse, public ones too; they win over CHORDFLOW_HTTP_ALLOWED_NETWORKS.
CHORDFLOW_HTTP_DENIED_NETWORKS = env_list("CHORDFLOW_HTTP_DENIED_NETWORKS")
# When set, the only destinations: host names, *.example.com (subdomains), addresses or CIDRs, each
# with an optional :port ([::1]:8080 for IPv6). Empty: any host whose addresses pass the rules above.
CHORDFLOW_HTTP_ALLOWED_HOSTS = env_list("CHORDFLOW_HTTP_ALLOWED_HOSTS")
CHORDFLOW_HTTP_MAX_REDIRECTS = env_int("CHORDFLOW_HTTP_MAX_REDIRECTS", 10)

# Hardening (approvals, deploy) -------------------------------------------------------------------
# Approvers who are not staff sign in at /accounts/login/ (the admin's login refuses them) and land
# on their inbox of pending approvals.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "approvals:inbox"
LOGOUT_REDIRECT_URL = "login"
# /healthz is answered first, before the host check and the HTTPS redirect (config/health.py says why).
MIDDLEWARE = ["config.health.HealthzMiddleware", *MIDDLEWARE]

# Hardening (REST) ----------------------------------------------------------------------------------
# JSON bodies nested deeper than CHORDFLOW_MAX_JSON_DEPTH (Limits, above) are refused with a 400
# before they are parsed (Python's parser would hit its recursion limit near 1000 levels: a 500).
# A request body sent with `Transfer-Encoding: chunked` (no Content-Length) is read up to
# CHORDFLOW_API_MAX_BODY_BYTES and passed on with its length; a longer one gets 413 (config/asgi.py).
# API rate limits (DRF throttles, "<count>/<second|minute|hour|day>"): per client IP for anonymous
# requests, per user for authenticated ones, and per client IP for wrong credentials (a wrong token or
# password), counted before the credentials are checked. Counters live in the default cache, which is
# per process unless CACHES points at a shared one.
CHORDFLOW_API_THROTTLE_ANON = env_str("CHORDFLOW_API_THROTTLE_ANON", "60/minute")
CHORDFLOW_API_THROTTLE_USER = env_str("CHORDFLOW_API_THROTTLE_USER", "1200/minute")
CHORDFLOW_API_THROTTLE_AUTH_FAILURES = env_str("CHORDFLOW_API_THROTTLE_AUTH_FAILURES", "20/minute")
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["config.throttles.AnonThrottle", "config.throttles.UserThrottle"]
REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"] = [
    "config.throttles.ThrottledTokenAuthentication",
    "config.throttles.ThrottledBasicAuthentication",
    "rest_framework.authentication.SessionAuthentication",
]
# The schema says what the API does: an empty optional query parameter (`?status=`) is left out.
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    "drf_spectacular.hooks.postprocess_schema_enums",
    "config.schema.empty_query_parameters_are_absent",
]
# Login limits (django-axes) for the admin's login form and the API's Basic auth: after
# CHORDFLOW_LOGIN_FAILURE_LIMIT wrong passwords for one username from one IP address, that pair is
# refused (429, even with the right password) for CHORDFLOW_LOGIN_COOLOFF_MINUTES; a success before
# the limit clears the count. `python manage.py axes_reset_username NAME` lifts a lockout early.
CHORDFLOW_LOGIN_FAILURE_LIMIT = env_int("CHORDFLOW_LOGIN_FAILURE_LIMIT", 5)
CHORDFLOW_LOGIN_COOLOFF_MINUTES = env_int("CHORDFLOW_LOGIN_COOLOFF_MINUTES", 15)
INSTALLED_APPS.append("axes")
MIDDLEWARE.append("axes.middleware.AxesMiddleware")  # last, as axes requires
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = CHORDFLOW_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=CHORDFLOW_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_COOLOFF_MESSAGE = (
    f"Too many failed logins for this username from your address: try again in {CHORDFLOW_LOGIN_COOLOFF_MINUTES} "
    "minutes, or ask an administrator to unlock it."
)
