"""Tokens expire and refresh; a refresh token is no access token; CSRF guards session writes; admin needs staff."""
from datetime import timedelta

from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from chat.models import Message
from tests.support.api import assert_error

PASSWORD = "security-test-pass"


def bearer(client, token):
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_an_expired_access_token_is_refused_and_a_refresh_gives_a_working_one(db, make_user, client_for):
    user = make_user(password=PASSWORD)
    expired = AccessToken.for_user(user)
    expired.set_exp(lifetime=-timedelta(seconds=1))
    assert_error(bearer(client_for(), str(expired)).get("/api/user/me"), 401, "NOT_AUTHENTICATED")
    refresh = RefreshToken.for_user(user)
    renewed = client_for().post("/api/auth/token/refresh", {"refresh": str(refresh)}, format="json")
    assert renewed.status_code == 200
    assert bearer(client_for(), renewed.json()["access"]).get("/api/user/me").json()["user_id"] == user.user_id


def test_an_expired_refresh_token_gets_nothing(db, make_user, client_for):
    refresh = RefreshToken.for_user(make_user())
    refresh.set_exp(lifetime=-timedelta(seconds=1))
    assert_error(client_for().post("/api/auth/token/refresh", {"refresh": str(refresh)}, format="json"), 401,
                 "NOT_AUTHENTICATED")


def test_a_refresh_token_is_not_an_access_token(db, make_user, client_for):
    refresh = RefreshToken.for_user(make_user())
    assert_error(bearer(client_for(), str(refresh)).get("/api/user/me"), 401, "NOT_AUTHENTICATED")


def test_session_writes_need_the_csrf_token(care_group, doctor):
    from users.services import user_update

    user_update(user=doctor, password=PASSWORD)
    browser = Client(enforce_csrf_checks=True)
    assert browser.login(username=doctor.username, password=PASSWORD)
    body = {"group_id": care_group.group_id, "content": "from the browsable API"}
    refused = browser.post("/api/message/send", body, content_type="application/json")
    assert_error(refused, 403, "PERMISSION_DENIED")
    assert "CSRF" in refused.json()["error"]["message"]
    assert not Message.objects.exists()
    page = browser.get("/api/message/list?group_id=" + care_group.group_id, HTTP_ACCEPT="text/html")
    assert page.status_code == 200  # reads need no token
    token = browser.cookies["csrftoken"].value
    accepted = browser.post("/api/message/send", body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201


def test_a_bearer_token_needs_no_csrf_token(care_group, doctor):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    bearer(client, AccessToken.for_user(doctor))
    sent = client.post("/api/message/send", {"group_id": care_group.group_id, "content": "api"}, format="json")
    assert sent.status_code == 201
