"""REST plumbing shared by every app: errors, permissions, pagination (JSON parsing: config.parsers)."""

from __future__ import annotations

import datetime
import re
from http import HTTPStatus

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import CursorPagination, LimitOffsetPagination
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from config.parsers import InvalidJSON
from executions.exceptions import InvalidTransitionError, RunNotAllowedError
from workflows.exceptions import ProblemsError


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def json_body(request):
    """The request's JSON body, for endpoints that need one: none at all is a 400, not a silent `{}`."""
    data = request.data
    if request.stream is None:
        raise exceptions.ParseError("the request body is empty: send a JSON object")
    if not request.content_type:
        raise exceptions.UnsupportedMediaType(None, detail="the body has no Content-Type: send application/json")
    return data


class ProblemSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="Where: `steps[2].depends_on[0]`, `input.total`.")
    message = serializers.CharField(help_text="What is wrong there.")


class ErrorSerializer(serializers.Serializer):
    """Every 4xx body: `detail` says what is wrong; `problems` lists each place, where there are several."""

    detail = serializers.CharField()
    problems = ProblemSerializer(many=True, required=False)


ERROR_DESCRIPTIONS = {
    400: "Bad input: every problem with its place.",
    401: "No credentials, or wrong ones.",
    403: "Missing permission.",
    404: "Not found.",
    409: "The current state does not allow this.",
    413: "Body over the size limit.",
}


def error_responses(*codes: int, **descriptions: str) -> dict:
    """OpenAPI responses for 4xx answers, all with the ErrorSerializer body; override a text as e.g. `c404="…"`."""
    from drf_spectacular.utils import OpenApiResponse

    texts = {code: descriptions.get(f"c{code}", ERROR_DESCRIPTIONS[code]) for code in codes}
    return {code: OpenApiResponse(ErrorSerializer, description=text) for code, text in texts.items()}


def _flatten(errors, prefix: str = "") -> list[dict]:
    """DRF's nested validation errors as a flat list of {path, message}."""
    if isinstance(errors, dict):
        out: list[dict] = []
        for key, value in errors.items():
            path = prefix if key == "non_field_errors" else (f"{prefix}.{key}" if prefix else str(key))
            out.extend(_flatten(value, path))
        return out
    if isinstance(errors, list):
        if all(not isinstance(item, dict | list) for item in errors):
            return [{"path": prefix, "message": str(item)} for item in errors]
        out = []
        for index, item in enumerate(errors):
            out.extend(_flatten(item, f"{prefix}[{index}]"))
        return out
    return [{"path": prefix, "message": str(errors)}]


def exception_handler(exc, context):
    """Turn our own errors into 4xx answers with the same shape as DRF's: never a 500 for bad input."""
    if isinstance(exc, ProblemsError):
        body = {"detail": exc.summary, "problems": [p.as_dict() for p in exc.problems]}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    from rest_framework.views import exception_handler as drf_exception_handler  # DRF imports this module

    if isinstance(exc, InvalidTransitionError | RunNotAllowedError):
        exc = Conflict(str(exc))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        problems = _flatten(response.data)
        response.data = {"detail": "invalid request: " + "; ".join(f"{p['path']}: {p['message']}" for p in problems)}
        response.data["problems"] = problems
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"])}
        if isinstance(exc, InvalidJSON):
            response.data["problems"] = exc.problems
    return response


def not_found(request, exception=None):
    """404 for URLs that match no route: JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": f"no such endpoint: {request.path}"}, status=HTTPStatus.NOT_FOUND)
    return page_not_found(request, exception or Http404())


class HasModelPermissions(BasePermission):
    """Django model permissions per HTTP method, declared on the view as `required_permissions`."""

    message = "you do not have the permission this needs"

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        required = getattr(view, "required_permissions", {}).get(request.method, ())
        if request.user.has_perms(required):
            return True
        self.message = f"you need the permission(s): {', '.join(required)}"
        return False


def query_int(request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """A whole-number query parameter: absent or empty gives the default, above `maximum` gives `maximum`,
    anything else that is not a whole number from `minimum` is a 400 naming the parameter."""
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) < minimum:
        raise exceptions.ValidationError({name: [f"must be a whole number, at least {minimum}"]})
    return min(int(raw), maximum)


def page_size_parameter(maximum: int):
    """The OpenAPI parameter of a cursor-paginated list's `page_size`."""
    from drf_spectacular.utils import OpenApiParameter

    schema = {"type": "integer", "minimum": 1}
    return OpenApiParameter("page_size", schema, description=f"Up to {maximum}; a larger value gives {maximum}.")


class ListPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500

    def get_limit(self, request) -> int:
        return query_int(request, self.limit_query_param, default=self.default_limit, minimum=1, maximum=self.max_limit)

    def get_offset(self, request) -> int:
        return query_int(request, self.offset_query_param, default=0, minimum=0, maximum=2**62)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1 if parameter["name"] == self.limit_query_param else 0
        return parameters


class BaseCursorPagination(CursorPagination):
    page_size_query_param = "page_size"

    def get_page_size(self, request) -> int:
        return query_int(
            request, self.page_size_query_param, default=self.page_size, minimum=1, maximum=self.max_page_size
        )

    invalid = {"cursor": ["invalid cursor: follow the next/previous links"]}

    def paginate_queryset(self, queryset, request, view=None):
        self.model = queryset.model  # decode_cursor checks the cursor's position against the ordering field
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        """A cursor that does not decode, or whose position the ordering field cannot hold, is a 400 naming it."""
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            raise exceptions.ValidationError(self.invalid) from None
        if cursor is not None and cursor.position is not None:
            ordering = self.ordering if isinstance(self.ordering, str) else self.ordering[0]
            try:
                self.model._meta.get_field(ordering.lstrip("-")).to_python(cursor.position)
            except DjangoValidationError:
                raise exceptions.ValidationError(self.invalid) from None
        return cursor


class NewestFirstPagination(BaseCursorPagination):
    ordering = "-created_at"
    page_size = 50
    max_page_size = 500


class InOrderPagination(BaseCursorPagination):
    ordering = "id"
    page_size = 100
    max_page_size = 1000


class InstantField(serializers.DateTimeField):
    """Any RFC 3339 date-time: `t` and `z` in either case, a leap second (read as :59), and an instant
    that leaves Python's range once moved to UTC (`0001-01-01T00:00:00+13:19`) clamped to its edge."""

    def to_internal_value(self, value):
        if isinstance(value, str):
            value = re.sub(r"(T\d{2}:\d{2}):60", r"\1:59", value.upper())
        return super().to_internal_value(value)

    def enforce_timezone(self, value):
        try:
            return super().enforce_timezone(value)
        except serializers.ValidationError:
            if value.year == datetime.MINYEAR:
                return datetime.datetime.min.replace(tzinfo=datetime.UTC)
            if value.year == datetime.MAXYEAR:
                return datetime.datetime.max.replace(tzinfo=datetime.UTC)
            raise


class StrictSerializer(serializers.Serializer):
    """Refuses keys it does not know, naming them, instead of silently ignoring a typo."""

    def to_internal_value(self, data):
        errors = {}
        if isinstance(data, dict):
            errors = {key: ["unknown field"] for key in sorted(set(data) - set(self.fields))}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not isinstance(exc.detail, dict):
                raise
            errors.update(exc.detail)
        if errors:
            raise serializers.ValidationError(errors)
        return value
