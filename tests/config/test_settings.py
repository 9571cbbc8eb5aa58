"""Settings load per environment; production refuses unsafe values with a message naming each."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.compose import process_environment, service_environment

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SAFE = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "a-real-secret-of-some-length-0123456789",
    "DJANGO_ALLOWED_HOSTS": "chordflow.example.com",
    "CHORDFLOW_BASE_URL": "https://chordflow.example.com",
}


def load_settings(module: str, **env: str) -> subprocess.CompletedProcess:
    code = (
        "import json, django; from django.conf import settings; django.setup();"
        "print(json.dumps({'debug': settings.DEBUG, 'formatter': settings.LOGGING['handlers']['console']['formatter'],"
        "'sqlite_options': settings.DATABASES['default'].get('OPTIONS', {}),"
        "'http': {k: getattr(settings, k) for k in dir(settings) if k.startswith('CHORDFLOW_HTTP_')},"
        "'proxy_header': settings.SECURE_PROXY_SSL_HEADER, 'ssl_redirect': settings.SECURE_SSL_REDIRECT,"
        "'hsts': settings.SECURE_HSTS_SECONDS}))"
    )
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "CHORDFLOW_BASE_URL", "CHORDFLOW_BEHIND_PROXY"))
    }
    full_env.update({"DJANGO_SETTINGS_MODULE": module, **env})
    return subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=full_env, capture_output=True, text=True)


def test_production_starts_with_safe_settings_and_logs_json():
    result = load_settings("config.settings.production", **SAFE)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["formatter"] == "json"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"DJANGO_DEBUG": "1"}, "DJANGO_DEBUG is on"),
        ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY is the default"),
        ({"DJANGO_ALLOWED_HOSTS": "*"}, "DJANGO_ALLOWED_HOSTS contains '*'"),
        ({"CHORDFLOW_BASE_URL": ""}, "CHORDFLOW_BASE_URL is not set: set the address people open Chordflow at"),
        ({"CHORDFLOW_BASE_URL": "chordflow.example.com"}, "CHORDFLOW_BASE_URL='chordflow.example.com' is not"),
    ],
)
def test_production_refuses_unsafe_settings(override, message):
    env = {**SAFE, **override}
    for name in ("DJANGO_SECRET_KEY", "CHORDFLOW_BASE_URL"):
        if override.get(name) == "":
            del env[name]
    result = load_settings("config.settings.production", **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_the_http_action_reaches_only_public_addresses_unless_told_and_loopback_in_development():
    production = json.loads(load_settings("config.settings.production", **SAFE).stdout)["http"]
    assert production == {
        "CHORDFLOW_HTTP_ALLOWED_HOSTS": [],
        "CHORDFLOW_HTTP_ALLOWED_NETWORKS": [],
        "CHORDFLOW_HTTP_DENIED_NETWORKS": [],
        "CHORDFLOW_HTTP_MAX_REDIRECTS": 10,
    }
    local = json.loads(load_settings("config.settings.local").stdout)["http"]
    assert local["CHORDFLOW_HTTP_ALLOWED_NETWORKS"] == ["127.0.0.0/8", "::1/128"]
    told = load_settings(
        "config.settings.production",
        **SAFE,
        CHORDFLOW_HTTP_ALLOWED_HOSTS="api.example.com, *.partner.example ,10.0.5.0/24",
        CHORDFLOW_HTTP_ALLOWED_NETWORKS="10.0.5.0/24",
    )
    http = json.loads(told.stdout)["http"]
    assert http["CHORDFLOW_HTTP_ALLOWED_HOSTS"] == ["api.example.com", "*.partner.example", "10.0.5.0/24"]
    assert http["CHORDFLOW_HTTP_ALLOWED_NETWORKS"] == ["10.0.5.0/24"]


def test_production_names_every_unsafe_setting_at_once():
    result = load_settings("config.settings.production", DJANGO_DEBUG="1", DJANGO_ALLOWED_HOSTS="*")
    assert "DJANGO_DEBUG is on" in result.stderr
    assert "DJANGO_SECRET_KEY is the default" in result.stderr
    assert "DJANGO_ALLOWED_HOSTS contains '*'" in result.stderr


def test_production_redirects_to_https_with_hsts_and_trusts_a_proxy_header_only_when_told():
    plain = json.loads(load_settings("config.settings.production", **SAFE).stdout)
    assert plain["ssl_redirect"] is True and plain["hsts"] >= 31536000
    assert plain["proxy_header"] is None  # the port may be reached directly: X-Forwarded-Proto is anyone's to send
    proxied = json.loads(load_settings("config.settings.production", **SAFE, CHORDFLOW_BEHIND_PROXY="1").stdout)
    assert proxied["proxy_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_check_deploy_is_clean_under_production_settings_with_the_compose_environment():
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    shell = {
        "DJANGO_SECRET_KEY": "deploy-check-" + "Vq8mN3xK7pL2wR9tY5cB1zH6jF4gD0sA" * 2,
        "DJANGO_ALLOWED_HOSTS": "chordflow.example.com",
        "CHORDFLOW_BASE_URL": "https://chordflow.example.com",
    }
    env = process_environment(service_environment(compose["services"]["web"], shell))
    assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues" in result.stdout


def test_local_is_debug_with_readable_logs_and_sqlite_in_wal_mode():
    result = load_settings("config.settings.local")
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["debug"] is True
    assert loaded["formatter"] == "text"
    if "DATABASE_URL" not in os.environ:
        assert "journal_mode=WAL" in loaded["sqlite_options"]["init_command"]


def test_a_bad_boolean_is_refused_with_its_name():
    result = load_settings("config.settings.local", DJANGO_DEBUG="maybe")
    assert "DJANGO_DEBUG='maybe' is not a boolean" in result.stderr


def test_a_flower_address_without_a_scheme_is_refused_with_its_name():
    result = load_settings("config.settings.local", CHORDFLOW_FLOWER_URL="flower.example.com")
    assert "CHORDFLOW_FLOWER_URL='flower.example.com' is not an address" in result.stderr


def test_json_log_lines_are_json():
    code = "import django, logging; django.setup(); logging.getLogger('chordflow.test').warning('hello %s', 'there')"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.production", **SAFE}
    result = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True)
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["message"] == "hello there"
    assert line["level"] == "WARNING"
    assert line["logger"] == "chordflow.test"
