"""Helpers shared by the REST and admin tests: the contract's error body, row counts, a superuser."""
import logging

import pytest
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from chat.models import Message
from groups.models import ChatGroup, GroupMember
from imserver.requestid import RequestIdFilter
from users.models import Role, User
from users.services import user_create


def assert_error(response, status: int, code: str) -> dict:
    """The response is the contract's error body with this status and code; returns its `error`."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["details"], dict), error
    return error


def counts() -> dict:
    """Stored rows a refused request must leave as they were."""
    return {
        "users": User.objects.count(),
        "groups": ChatGroup.objects.count(),
        "members": GroupMember.objects.count(),
        "messages": Message.objects.count(),
    }


@pytest.fixture
def superuser(db):
    return user_create(username="root", user_role=Role.DOCTOR, password="a-long-admin-pass", is_staff=True,
                       is_superuser=True)


@pytest.fixture
def admin_browser(superuser):
    """A browser logged in to the Django admin as a staff superuser (session cookie)."""
    browser = Client()
    browser.force_login(superuser)
    return browser


@pytest.fixture
def fast_hasher(settings):
    """Password hashing at test speed; what is checked is who gets in, not the hash's cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def access_token(user) -> str:
    """An access token alone: minting a pair writes its refresh token down, which an event loop may not."""
    return str(AccessToken.for_user(user))


class LogCollector(logging.Handler):
    """Keeps every record it is given, with its request id, as the console handler would format it."""

    def __init__(self):
        super().__init__()
        self.addFilter(RequestIdFilter())
        self.records = []

    def emit(self, record):
        self.records.append(record)
