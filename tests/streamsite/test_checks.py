"""streamsite/checks.py: each misconfiguration has its id; a sound deployment has none."""

from __future__ import annotations

import pytest
from django.conf import settings as settings_module
from django.core.checks import run_checks

from streamsite import checks

PRODUCTION = {
    "DEBUG": False,
    "ALLOWED_HOSTS": ["streams.example.org"],
    "SITE_ORIGINS": ["https://streams.example.org"],
    "SECURE_SSL_REDIRECT": True,
    "SESSION_COOKIE_SECURE": True,
    "REDIS_URL_ORIGIN": "environment",
}


def database_engine(monkeypatch, engine: str) -> None:
    # Set in place (restored after the test): the checks read only the name.
    monkeypatch.setitem(settings_module.DATABASES["default"], "ENGINE", engine)


@pytest.fixture
def production(settings, tmp_path, monkeypatch):
    for name, value in PRODUCTION.items():
        setattr(settings, name, value)
    database_engine(monkeypatch, "django.db.backends.postgresql")
    settings.STATIC_ROOT = tmp_path
    (tmp_path / "staticfiles.json").write_text('{"paths": {}, "version": "1.1"}')
    return settings


def ids(deploy: bool = True) -> list[str]:
    return [
        message.id for message in run_checks(tags=[checks.TAG], include_deployment_checks=deploy)
    ]


def test_a_sound_production_configuration_has_no_issue(production):
    assert ids() == []


def test_the_checks_are_deployment_checks(production):
    production.ALLOWED_HOSTS = []
    assert ids(deploy=False) == []
    assert ids() == ["streamsite.E001"]


def test_no_allowed_hosts_is_an_error(production):
    production.ALLOWED_HOSTS = []
    assert ids() == ["streamsite.E001"]


@pytest.mark.parametrize(
    ("hosts", "origins", "expected"),
    [
        (["streams.example.org"], ["https://other.example.org"], ["streamsite.E002"]),
        ([".example.org"], ["https://streams.example.org:8443"], []),
        (["streams.example.org"], ["https://*.example.org"], ["streamsite.E002"]),
        ([".example.org"], ["https://*.example.org"], []),
    ],
)
def test_a_site_origin_outside_allowed_hosts_is_an_error(production, hosts, origins, expected):
    production.ALLOWED_HOSTS, production.SITE_ORIGINS = hosts, origins
    assert ids() == expected


def test_a_plain_http_origin_with_secure_cookies_is_an_error(production):
    production.SITE_ORIGINS = ["http://streams.example.org:8080"]
    assert ids() == ["streamsite.E003"]
    production.SECURE_SSL_REDIRECT = production.SESSION_COOKIE_SECURE = False
    assert ids() == []


def test_static_files_not_collected_is_an_error(production, tmp_path):
    (tmp_path / "staticfiles.json").unlink()
    assert ids() == ["streamsite.E004"]
    # In DEBUG the files come from static/ as they are: nothing to collect.
    production.STORAGES = {
        **production.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    assert ids() == []


def test_sqlite_in_production_is_a_warning(production, monkeypatch):
    database_engine(monkeypatch, "django.db.backends.sqlite3")
    assert ids() == ["streamsite.W001"]


def test_redis_url_left_to_its_default_is_a_warning(production):
    production.REDIS_URL_ORIGIN = "default"
    assert ids() == ["streamsite.W002"]


def test_debug_mode_is_left_alone(production, monkeypatch):
    production.DEBUG = True
    production.ALLOWED_HOSTS = []
    production.REDIS_URL_ORIGIN = "default"
    database_engine(monkeypatch, "django.db.backends.sqlite3")
    assert ids() == []
