"""The admin's login form locks a username from one address after too many wrong passwords (django-axes)."""

import pytest
from django.contrib.auth.models import User


@pytest.mark.django_db
def test_wrong_admin_passwords_lock_out_even_the_right_one_for_that_username_and_address(client, settings):
    User.objects.create_user("root", password="right-password", is_staff=True, is_superuser=True)
    other = User.objects.create_user("ops", password="ops-password", is_staff=True)
    login = "/admin/login/?next=/admin/"
    for _ in range(settings.CHORDFLOW_LOGIN_FAILURE_LIMIT - 1):
        wrong = client.post(login, {"username": "root", "password": "wrong"})
        assert wrong.status_code == 200 and b"Please enter the correct username and password" in wrong.content
    locked = client.post(login, {"username": "root", "password": "wrong"})
    assert locked.status_code == 429
    refused = client.post(login, {"username": "root", "password": "right-password"})
    assert refused.status_code == 429 and settings.AXES_COOLOFF_MESSAGE in refused.content.decode()
    assert "try again in 15 minutes" in settings.AXES_COOLOFF_MESSAGE
    assert client.post(login, {"username": other.username, "password": "ops-password"}).status_code == 302


@pytest.mark.django_db
def test_a_success_before_the_limit_clears_the_count(client, settings):
    User.objects.create_user("root", password="right-password", is_staff=True)
    login = "/admin/login/?next=/admin/"
    for _ in range(2):
        for _ in range(settings.CHORDFLOW_LOGIN_FAILURE_LIMIT - 1):
            client.post(login, {"username": "root", "password": "wrong"})
        assert client.post(login, {"username": "root", "password": "right-password"}).status_code == 302
        client.logout()
