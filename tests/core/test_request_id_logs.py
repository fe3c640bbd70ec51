"""Every log line a request causes carries its request id, the 4xx and 5xx lines Django writes included, so an
operator can find all of a failed request by the id its client saw in `X-Request-ID`."""
import logging

import pytest
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from chat.views import MessageViewSet
from tests.support.api import LogCollector


@pytest.fixture
def log_lines():
    """Every record that reaches the root logger while the test runs, as the console handler would see it."""
    handler = LogCollector()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler.records
    root.removeHandler(handler)


def broken(self, request, message_id=None):
    raise RuntimeError("a bug")


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path, status", [("/api/no/such/thing", 404), ("/metrics", 403),
                                          ("/api/message/msg_1", 500)])
def test_every_log_line_of_a_failed_request_carries_its_id(log_lines, doctor, monkeypatch, settings, debug,
                                                          path, status):
    settings.DEBUG = debug
    monkeypatch.setattr(MessageViewSet, "retrieve", broken)
    response = Client(raise_request_exception=False).get(
        path, HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(doctor)}", HTTP_X_REQUEST_ID="req-failed-7")
    assert response.status_code == status and response["X-Request-ID"] == "req-failed-7"
    assert any(r.name == "django.request" and r.status_code == status for r in log_lines), \
        [r.getMessage() for r in log_lines]
    assert {r.request_id for r in log_lines} == {"req-failed-7"}, \
        [(r.name, r.request_id, r.getMessage()) for r in log_lines]


@pytest.mark.django_db
def test_a_refused_host_is_logged_with_its_request_id(log_lines):
    response = Client().get("/", HTTP_HOST="evil.example", HTTP_X_REQUEST_ID="req-host-1")
    assert response.status_code == 400
    assert {r.name for r in log_lines} >= {"django.security.DisallowedHost", "django.request"}
    assert {r.request_id for r in log_lines} == {"req-host-1"}


@pytest.mark.django_db
def test_the_id_does_not_outlive_its_request(log_lines, doctor):
    logging.getLogger("imserver.test").warning("before the request")
    before = log_lines[-1].request_id  # what this thread carried before (other tests may have left one)
    Client().get("/api/no/such/thing", HTTP_X_REQUEST_ID="req-gone-3")
    logging.getLogger("imserver.test").warning("after the request")
    assert log_lines[-1].getMessage() == "after the request"
    assert log_lines[-1].request_id == before != "req-gone-3"
