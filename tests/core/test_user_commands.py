"""`manage.py user_create` and `manage.py user_token`: an operator's users and tokens that work on the API."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.support.api import counts
from users.models import User

pytestmark = pytest.mark.usefixtures("fast_hasher")


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def test_user_create_prints_the_new_user_id(db):
    user_id = run("user_create", "wang")

    user = User.objects.get(user_id=user_id)
    assert user_id.startswith("user_")
    assert user.username == "wang" and user.user_role == "PATIENT" and not user.is_staff
    assert not user.has_usable_password()


def test_user_create_with_role_staff_and_password(db, client_for):
    user_id = run("user_create", "ops", "--role", "DOCTOR", "--staff", "--password", "an-operator-secret")

    user = User.objects.get(user_id=user_id)
    assert user.user_role == "DOCTOR" and user.is_staff
    login = client_for().post("/api/auth/token", {"username": "ops", "password": "an-operator-secret"},
                              format="json")
    assert login.status_code == 200 and login.json()["user"]["user_id"] == user_id
    # staff: it may create users over the API
    access = login.json()["access"]
    created = client_for().post("/api/user/create", {"username": "x1", "user_role": "PATIENT"}, format="json",
                                HTTP_AUTHORIZATION=f"Bearer {access}")
    assert created.status_code == 201


@pytest.mark.parametrize("role", ["AI_ASSISTANT", "PATIENT"])
def test_user_create_with_each_role(db, role):
    assert User.objects.get(user_id=run("user_create", f"u_{role.lower()}", "--role", role)).user_role == role


@pytest.mark.parametrize("args", [("--role", "NURSE"), ("--password", "123")])
def test_user_create_refuses_bad_input_and_stores_nothing(db, args):
    before = counts()

    with pytest.raises(CommandError):
        run("user_create", "li", *args)

    assert counts() == before


def test_user_create_refuses_a_taken_username(patient):
    before = counts()

    with pytest.raises(CommandError, match="taken"):
        run("user_create", patient.username)

    assert counts() == before


@pytest.mark.parametrize("by", ["username", "user_id"])
def test_user_token_prints_an_access_token_that_works(make_user, client_for, by):
    bot = make_user(username="bridge")  # no password
    token = run("user_token", getattr(bot, by))

    response = client_for().get("/api/user/me", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 200 and response.json()["user_id"] == bot.user_id


def test_user_token_with_refresh_prints_a_working_refresh_token(make_user, client_for):
    bot = make_user(username="bridge")

    access, refresh = run("user_token", "bridge", "--refresh").splitlines()

    assert client_for().get("/api/user/me", HTTP_AUTHORIZATION=f"Bearer {access}").status_code == 200
    refreshed = client_for().post("/api/auth/token/refresh", {"refresh": refresh}, format="json")
    assert refreshed.status_code == 200
    me = client_for().get("/api/user/me", HTTP_AUTHORIZATION=f"Bearer {refreshed.json()['access']}")
    assert me.json()["user_id"] == bot.user_id


def test_user_token_for_an_unknown_user_fails(db):
    with pytest.raises(CommandError, match="nobody"):
        run("user_token", "nobody")
