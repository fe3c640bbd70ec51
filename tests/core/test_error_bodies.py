"""Error bodies a client can show as they are: the contract's JSON even with DEBUG on (no debug page, traceback
or settings), and 401s in plain words with simplejwt's reason code beside them."""
from datetime import timedelta

import pytest
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from chat.views import MessageViewSet
from tests.support.api import assert_error

SECRET_LOOKING = "do-not-show-this-to-clients"


@pytest.fixture
def debug_on(settings):
    settings.DEBUG = True


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def assert_plain(error: dict) -> None:
    assert "ErrorDetail" not in error["message"] and "{" not in error["message"], error


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/no/such/thing", "/api/", "/api/message/x/y/z"])
def test_an_unknown_api_path_is_a_json_404_with_debug_on(debug_on, doctor, path):
    response = Client().get(path, **bearer(str(AccessToken.for_user(doctor))))
    assert response["Content-Type"] == "application/json"
    assert_error(response, 404, "NOT_FOUND")


@pytest.mark.django_db
def test_a_bug_in_a_view_is_a_json_500_without_traceback(debug_on, doctor, monkeypatch):
    def broken(self, request, message_id=None):
        raise RuntimeError(SECRET_LOOKING)

    monkeypatch.setattr(MessageViewSet, "retrieve", broken)
    response = Client(raise_request_exception=False).get("/api/message/msg_1", **bearer(
        str(AccessToken.for_user(doctor))))
    assert_error(response, 500, "INTERNAL_ERROR")
    assert SECRET_LOOKING not in response.content.decode() and "Traceback" not in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("accept", ["application/json", "text/html"])
def test_a_failure_outside_the_view_is_a_json_500_without_traceback(debug_on, doctor, monkeypatch, accept):
    # The response cannot be rendered: Django itself answers, with DEBUG's traceback page unless told otherwise.
    from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer

    def broken(self, *args, **kwargs):
        raise RuntimeError(SECRET_LOOKING)

    monkeypatch.setattr(JSONRenderer, "render", broken)
    monkeypatch.setattr(BrowsableAPIRenderer, "render", broken)
    response = Client(raise_request_exception=False).get("/api/user/me", HTTP_ACCEPT=accept, **bearer(
        str(AccessToken.for_user(doctor))))
    assert_error(response, 500, "INTERNAL_ERROR")
    body = response.content.decode()
    assert SECRET_LOOKING not in body and "Traceback" not in body and "SECRET_KEY" not in body
    assert int(response["Content-Length"]) == len(response.content)


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("path", ["/", "/api/user/me", "/admin/", "/health"])
def test_a_foreign_host_header_is_a_json_400_and_never_the_settings_page(settings, debug, path):
    settings.DEBUG = debug
    response = Client().get(path, HTTP_HOST="evil.example")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "Host" in error["message"]
    assert "SECRET_KEY" not in response.content.decode() and "ALLOWED_HOSTS" not in response.content.decode()


@pytest.mark.django_db
def test_the_browsable_api_still_renders_its_own_error_pages(debug_on, doctor):
    response = Client().get("/api/group/group_nope", HTTP_ACCEPT="text/html", **bearer(
        str(AccessToken.for_user(doctor))))
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
    assert "NOT_FOUND" in response.content.decode()


# --- 401 -------------------------------------------------------------------------------------------------

def test_an_expired_access_token_says_so_in_plain_words(make_user, client_for):
    expired = AccessToken.for_user(make_user())
    expired.set_exp(lifetime=-timedelta(seconds=1))
    error = assert_error(Client().get("/api/user/me", **bearer(str(expired))), 401, "NOT_AUTHENTICATED")
    assert_plain(error)
    assert "expired" in error["message"].lower()
    assert error["details"] == {"token_code": "token_not_valid"}


def test_a_token_that_is_not_a_jwt_is_refused_in_plain_words(db):
    error = assert_error(Client().get("/api/user/me", **bearer("not-a-jwt")), 401, "NOT_AUTHENTICATED")
    assert_plain(error)
    assert "invalid" in error["message"].lower()
    assert error["details"] == {"token_code": "token_not_valid"}


def test_an_expired_refresh_token_is_refused_in_plain_words(make_user, client_for):
    refresh = RefreshToken.for_user(make_user())
    refresh.set_exp(lifetime=-timedelta(seconds=1))
    error = assert_error(client_for().post("/api/auth/token/refresh", {"refresh": str(refresh)}, format="json"),
                         401, "NOT_AUTHENTICATED")
    assert_plain(error)
    assert "expired" in error["message"].lower()
    assert error["details"] == {"token_code": "token_not_valid"}


def test_no_credentials_at_all_is_a_plain_401_without_a_token_code(db):
    error = assert_error(Client().get("/api/user/me"), 401, "NOT_AUTHENTICATED")
    assert error["message"] == "Authentication credentials were not provided."
    assert error["details"] == {}
