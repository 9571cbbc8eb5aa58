"""Production settings: refuse to start when a setting would be unsafe."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import ALLOWED_HOSTS, DEBUG, INSECURE_SECRET_KEY, SECRET_KEY, env_bool, env_int, env_str

LOG_FORMAT = env_str("LOG_FORMAT", "json")
LOGGING["handlers"]["console"]["formatter"] = LOG_FORMAT  # noqa: F405

_problems = []
if DEBUG:
    _problems.append("DJANGO_DEBUG is on: set DJANGO_DEBUG=0")
if not SECRET_KEY or SECRET_KEY == INSECURE_SECRET_KEY:
    _problems.append("DJANGO_SECRET_KEY is the default development key: set a secret of your own")
if "*" in ALLOWED_HOSTS:
    _problems.append("DJANGO_ALLOWED_HOSTS contains '*': list the host names this site serves")
# Links in approval emails: the development default (127.0.0.1) would send approvers nowhere.
CHORDFLOW_BASE_URL = env_str("CHORDFLOW_BASE_URL")
if not CHORDFLOW_BASE_URL:
    _problems.append(
        "CHORDFLOW_BASE_URL is not set: set the address people open Chordflow at "
        "(e.g. https://chordflow.example.com); approval emails link to it"
    )
elif not CHORDFLOW_BASE_URL.startswith(("https://", "http://")):
    _problems.append(f"CHORDFLOW_BASE_URL={CHORDFLOW_BASE_URL!r} is not an address: start it with https://")
# /metrics stays closed (401) without a token, whatever the environment says.
CHORDFLOW_METRICS_REQUIRE_TOKEN = True
if _problems:
    raise ImproperlyConfigured("Unsafe production settings: " + "; ".join(_problems))

# HTTPS. Chordflow does not terminate TLS: a proxy (or load balancer) in front does. Its
# X-Forwarded-Proto header is trusted only with CHORDFLOW_BEHIND_PROXY=1, and only safe when clients
# cannot reach the app port without passing the proxy, which must overwrite the header.
CHORDFLOW_BEHIND_PROXY = env_bool("CHORDFLOW_BEHIND_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if CHORDFLOW_BEHIND_PROXY else None
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)  # /healthz is exempt (config/health.py)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# HSTS is sent on HTTPS responses only. One year, for this host alone by default.
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
# Silenced: security.W005 (HSTS without includeSubDomains) and security.W021 (without preload). Both
# bind every subdomain of the domain Chordflow runs under to HTTPS, for a year or (preload, shipped in
# browsers) for good: a promise only the owner of the whole domain can make, not this app. Opt in
# with DJANGO_HSTS_INCLUDE_SUBDOMAINS=1 and DJANGO_HSTS_PRELOAD=1.
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]
# Static files come from STATIC_ROOT, collected at image build, with content hashes in their names.
STORAGES["staticfiles"] = {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}  # noqa: F405
WHITENOISE_USE_FINDERS = False
EMAIL_BACKEND = env_str("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
