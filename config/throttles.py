"""API rate limits: request throttles with rates from settings, and a limit on wrong credentials per client."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.authentication import BasicScheme
from rest_framework import authentication, exceptions
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle


class AnonThrottle(AnonRateThrottle):
    """Anonymous requests per client IP. Rates are read per request, so a test can override the setting."""

    def get_rate(self) -> str | None:
        return settings.CHORDFLOW_API_THROTTLE_ANON


class UserThrottle(UserRateThrottle):
    """Authenticated requests per user."""

    def get_rate(self) -> str | None:
        return settings.CHORDFLOW_API_THROTTLE_USER


class AuthFailureThrottle(SimpleRateThrottle):
    """Wrong credentials per client IP.

    DRF checks throttles only after authentication succeeds, so a guessed token or password would
    never be counted there: this one is checked before credentials are, and counts only failures.
    """

    scope = "auth_failures"

    def get_rate(self) -> str | None:
        return settings.CHORDFLOW_API_THROTTLE_AUTH_FAILURES

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def refuse_if_over(self, request) -> None:
        """Raise Throttled while this client has used up its failures, whatever it sends now."""
        if self.rate is None:
            return
        self.key = self.get_cache_key(request, None)
        self.now = self.timer()
        self.history = [at for at in self.cache.get(self.key, []) if at > self.now - self.duration]
        if len(self.history) >= self.num_requests:
            raise exceptions.Throttled(
                self.wait(), detail="too many requests with wrong credentials from your address: try again later"
            )

    def record_failure(self) -> None:
        if self.rate is not None:
            self.history.insert(0, self.now)
            self.cache.set(self.key, self.history, self.duration)


class _FailureLimited:
    """Counts this scheme's wrong credentials; a client over the limit is refused before they are checked."""

    scheme = b""

    def authenticate(self, request):
        presented = authentication.get_authorization_header(request).split()[:1]
        if not presented or presented[0].lower() != self.scheme:
            return super().authenticate(request)
        throttle = AuthFailureThrottle()
        throttle.refuse_if_over(request)
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            throttle.record_failure()
            if getattr(request, "axes_locked_out", False):  # django-axes refused a username+IP pair it locked
                raise exceptions.Throttled(detail=settings.AXES_COOLOFF_MESSAGE) from None
            raise


class ThrottledTokenAuthentication(_FailureLimited, authentication.TokenAuthentication):
    scheme = b"token"


class ThrottledBasicAuthentication(_FailureLimited, authentication.BasicAuthentication):
    scheme = b"basic"


class ThrottledBasicScheme(BasicScheme):
    """The OpenAPI security scheme of ThrottledBasicAuthentication (drf-spectacular matches only the exact class)."""

    target_class = ThrottledBasicAuthentication
