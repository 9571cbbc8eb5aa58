"""Users with chosen permissions, and REST clients that authenticate the way real clients do."""

from __future__ import annotations

import base64
import itertools

from django.contrib.auth.models import Permission, User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

_names = itertools.count()


def user_with(*perms: str, superuser: bool = False) -> User:
    user = User.objects.create_user(username=f"user{next(_names)}", password="pw-123456", is_superuser=superuser)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return User.objects.get(pk=user.pk)  # fresh: no stale permission cache


def token_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def basic_client(user: User, password: str = "pw-123456") -> APIClient:
    client = APIClient()
    encoded = base64.b64encode(f"{user.username}:{password}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {encoded}")
    return client
