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
if _problems:
    raise ImproperlyConfigured("Unsafe production settings: " + "; ".join(_problems))

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0)
EMAIL_BACKEND = env_str("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
