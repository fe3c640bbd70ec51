"""Tokens: password login, refresh, and staff-minted tokens for users without a password."""
import time

import pytest

from tests.support.api import assert_error
from users.models import Role
from users.services import user_update

PASSWORD = "correct-horse-battery"

pytestmark = pytest.mark.usefixtures("fast_hasher")


@pytest.fixture
def alice(make_user):
    return make_user(Role.DOCTOR, username="alice", password=PASSWORD)


def bearer(client, access):
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


@pytest.mark.parametrize("path", ["/api/auth/token", "/api/auth/token/"])
def test_login_returns_access_refresh_and_user(alice, client_for, path):
    response = client_for().post(path, {"username": "alice", "password": PASSWORD}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"access", "refresh", "user"}
    assert body["user"]["user_id"] == alice.user_id
    assert body["user"]["username"] == "alice" and body["user"]["user_role"] == "DOCTOR"
    me = bearer(client_for(), body["access"]).get("/api/user/me")
    assert me.status_code == 200 and me.json()["user_id"] == alice.user_id


def test_login_with_wrong_password_is_refused(alice, client_for):
    response = client_for().post("/api/auth/token", {"username": "alice", "password": "wrong-one"}, format="json")

    assert_error(response, 401, "NOT_AUTHENTICATED")


def test_login_of_unknown_user_is_refused(db, client_for):
    response = client_for().post("/api/auth/token", {"username": "nobody", "password": PASSWORD}, format="json")

    assert_error(response, 401, "NOT_AUTHENTICATED")


@pytest.mark.parametrize("body", [{}, {"username": "alice"}, {"password": PASSWORD},
                                  {"username": ["alice"], "password": PASSWORD}])
def test_login_with_missing_or_wrong_typed_fields_is_a_validation_error(alice, client_for, body):
    response = client_for().post("/api/auth/token", body, format="json")

    assert_error(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("path", ["/api/auth/token/refresh", "/api/auth/token/refresh/"])
def test_refresh_returns_a_working_access_token(alice, client_for, path):
    login = client_for().post("/api/auth/token", {"username": "alice", "password": PASSWORD}, format="json").json()

    response = client_for().post(path, {"refresh": login["refresh"]}, format="json")

    assert response.status_code == 200, response.content
    assert "access" in response.json()
    me = bearer(client_for(), response.json()["access"]).get("/api/user/me")
    assert me.status_code == 200 and me.json()["user_id"] == alice.user_id


def test_refresh_with_a_garbage_token_is_refused(db, client_for):
    response = client_for().post("/api/auth/token/refresh", {"refresh": "not.a.token"}, format="json")

    assert_error(response, 401, "NOT_AUTHENTICATED")


def test_refresh_without_a_token_is_a_validation_error(db, client_for):
    assert_error(client_for().post("/api/auth/token/refresh", {}, format="json"), 400, "VALIDATION_ERROR")


def test_refresh_token_is_not_accepted_as_bearer_access_token(alice, client_for):
    login = client_for().post("/api/auth/token", {"username": "alice", "password": PASSWORD}, format="json").json()

    response = bearer(client_for(), login["refresh"]).get("/api/user/me")

    assert_error(response, 401, "NOT_AUTHENTICATED")


def test_garbage_bearer_token_is_refused(db, client_for):
    assert_error(bearer(client_for(), "abc.def.ghi").get("/api/user/me"), 401, "NOT_AUTHENTICATED")


@pytest.mark.parametrize("path", ["/api/user/{}/token", "/api/user/{}/token/"])
def test_staff_mints_tokens_for_a_passwordless_user_and_they_work(staff, make_user, client_for, path):
    bot = make_user(Role.AI_ASSISTANT, username="bridge")  # no password: it cannot log in by itself
    assert not bot.has_usable_password()

    response = client_for(staff).post(path.format(bot.user_id))

    assert response.status_code == 200, response.content
    tokens = response.json()
    assert set(tokens) >= {"access", "refresh"}
    me = bearer(client_for(), tokens["access"]).get("/api/user/me")
    assert me.status_code == 200 and me.json()["user_id"] == bot.user_id
    refreshed = client_for().post("/api/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json")
    assert refreshed.status_code == 200


def test_passwordless_user_cannot_log_in_with_any_password(make_user, client_for):
    make_user(Role.AI_ASSISTANT, username="bridge")

    response = client_for().post("/api/auth/token", {"username": "bridge", "password": ""}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR")
    response = client_for().post("/api/auth/token", {"username": "bridge", "password": "anything-at-all"},
                                 format="json")
    assert_error(response, 401, "NOT_AUTHENTICATED")


@pytest.mark.parametrize("role", [Role.DOCTOR, Role.PATIENT, Role.AI_ASSISTANT])
def test_non_staff_cannot_mint_tokens(make_user, client_for, role):
    caller, target = make_user(role), make_user(Role.PATIENT)

    response = client_for(caller).post(f"/api/user/{target.user_id}/token")

    assert_error(response, 403, "PERMISSION_DENIED")
    assert "access" not in response.json()


def test_minting_tokens_for_an_unknown_user_is_not_found(staff, client_for):
    assert_error(client_for(staff).post("/api/user/user_nope/token"), 404, "NOT_FOUND")


def test_inactive_users_token_is_refused(alice, client_for):
    client = client_for(alice)
    user_update(user=alice, is_active=False)

    assert_error(client.get("/api/user/me"), 401, "NOT_AUTHENTICATED")


def test_a_token_used_before_is_refused_once_it_expires(alice, client_for):
    """A server remembers the tokens it parsed (users.authentication.ParsedTokens), and still checks the expiry
    of each on every request."""
    from datetime import timedelta

    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken.for_user(alice)
    token.set_exp(lifetime=timedelta(seconds=2))
    client = bearer(client_for(), str(token))
    assert client.get("/api/user/me").status_code == 200
    assert client.get("/api/user/me").status_code == 200  # from what the server remembers
    time.sleep(2.1)
    assert_error(client.get("/api/user/me"), 401, "NOT_AUTHENTICATED")


def test_a_token_differing_only_in_its_signature_is_refused(alice, client_for):
    access = client_for().post("/api/auth/token", {"username": "alice", "password": PASSWORD},
                               format="json").json()["access"]
    assert bearer(client_for(), access).get("/api/user/me").status_code == 200
    head, _, signature = access.rpartition(".")
    forged = f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    assert_error(bearer(client_for(), forged).get("/api/user/me"), 401, "NOT_AUTHENTICATED")


def test_a_remembered_token_of_a_deactivated_user_is_refused(alice, client_for):
    access = client_for().post("/api/auth/token", {"username": "alice", "password": PASSWORD},
                               format="json").json()["access"]
    client = bearer(client_for(), access)
    assert client.get("/api/user/me").status_code == 200  # parsed now, remembered from here on
    user_update(user=alice, is_active=False)
    assert_error(client.get("/api/user/me"), 401, "NOT_AUTHENTICATED")
