"""Production's HTTPS settings come from the environment: with them on, Django's deployment check has nothing to
say; left unset, local development over plain HTTP works as before."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "Zq7-production-only-" + "x9Kp2mV4tR8wB1nL6cJ0hF3sD5gA" * 2,
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
}


def deploy_check(env: dict) -> subprocess.CompletedProcess:
    # Not the test run's own switches (the browser tests allow async-unsafe ORM calls, which production must not).
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION and k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    clean.update(DJANGO_SETTINGS_MODULE="imserver.settings", **env)
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                          env=clean, capture_output=True, text=True, timeout=120)


def test_a_production_environment_passes_the_deployment_check():
    result = deploy_check(PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_without_the_https_settings_the_check_names_what_is_missing():
    result = deploy_check({"DEBUG": "false", "SECRET_KEY": PRODUCTION["SECRET_KEY"]})
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr, result.stderr


@pytest.mark.django_db
def test_local_development_over_plain_http_is_not_redirected_and_its_cookies_work(make_user, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = make_user(password="plain-http-pass-1")
    browser = Client()
    page = browser.get("/")
    assert page.status_code == 200 and "Strict-Transport-Security" not in page
    assert browser.login(username=user.username, password="plain-http-pass-1")
    assert not browser.cookies["sessionid"]["secure"]


@pytest.mark.django_db
def test_with_the_https_settings_plain_http_is_redirected_but_health_is_not(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    client = Client()
    page = client.get("/")
    assert page.status_code == 301 and page["Location"] == "https://testserver/"
    assert client.get("/health").status_code == 200  # load balancers probe over plain HTTP
    secure = client.get("/", secure=True)
    assert secure.status_code == 200 and secure["Strict-Transport-Security"].startswith("max-age=31536000")
