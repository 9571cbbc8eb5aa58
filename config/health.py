"""GET /healthz: whether the database and the broker answer, for load balancers and orchestrators."""

from http import HTTPStatus

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.celery_app import app as celery_app

BROKER_TIMEOUT_SECONDS = 2


def database_status() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "down"; the message says which
        return f"down: {exc.__class__.__name__}: {exc}"
    return "ok"


def broker_status() -> str:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_SECONDS)
    except Exception as exc:
        return f"down: {exc.__class__.__name__}: {exc}"
    return "ok"


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": database_status(), "broker": broker_status()}
    down = sorted(name for name, state in checks.items() if state != "ok")
    body = {"status": "ok" if not down else "down", "down": down, "checks": checks}
    return JsonResponse(body, status=HTTPStatus.SERVICE_UNAVAILABLE if down else HTTPStatus.OK)


class HealthzMiddleware:
    """Answers /healthz before any other middleware, so a probe is never refused for its Host header.

    Probes address the process by IP (compose's healthcheck calls 127.0.0.1:8000, Kubernetes the pod
    IP), which DJANGO_ALLOWED_HOSTS rightly does not list: CommonMiddleware's host check would answer
    400, and SECURE_SSL_REDIRECT a redirect to https that nothing inside serves. The answer uses no
    host, session or user, so skipping those checks here lets nothing else past them.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        if request.path_info == "/healthz":
            return healthz(request)
        return self.get_response(request)
