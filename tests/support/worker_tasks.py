"""Tasks that only the test worker loads, to prove it shares the broker and the database."""

from celery import shared_task
from django.contrib.auth import get_user_model


@shared_task(name="tests.create_user")
def create_user(username: str) -> int:
    return get_user_model().objects.create(username=username).pk
