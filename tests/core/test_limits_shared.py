"""Limits that no transport bypasses: one send rate per user for HTTP and WebSocket, JSON nesting bounds on
bodies and frames, and login throttling per username and address."""
import json

import pytest

from chat.models import Message
from tests.support.api import assert_error
from tests.support.ws import ask, connected, run, send_message
from users.models import Role

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_channel_layer")]


def _http_send(client, group, content):
    return client.post("/api/message/send", {"group_id": group.group_id, "content": content}, format="json")


def _ws_send(user, group, content) -> dict:
    async def scenario():
        async with connected(user) as ws:
            return await send_message(ws, {"type": "send_message", "group_id": group.group_id, "content": content,
                                           "client_msg_id": content})

    return run(scenario)


def test_after_http_sends_are_limited_websocket_sends_of_the_same_user_are_too(
        doctor, patient, quiet_group, client_for, settings):
    settings.IM_SEND_RATE = "3/min"
    http = client_for(doctor)
    for i in range(3):
        assert _http_send(http, quiet_group, f"http {i}").status_code == 201
    assert_error(_http_send(http, quiet_group, "http refused"), 429, "RATE_LIMITED")
    refused = _ws_send(doctor, quiet_group, "ws refused")
    assert refused["type"] == "error" and refused["code"] == "RATE_LIMITED"
    assert refused["client_msg_id"] == "ws refused"
    assert not Message.objects.filter(content__endswith="refused").exists()
    # Another user is not affected, on either transport.
    assert _ws_send(patient, quiet_group, "patient by ws")["type"] == "message_ack"


def test_after_websocket_sends_are_limited_http_sends_of_the_same_user_are_too(
        doctor, quiet_group, client_for, settings):
    settings.IM_SEND_RATE = "2/min"

    async def scenario():
        async with connected(doctor) as ws:
            answers = []
            for i in range(3):
                frame = await send_message(ws, {"type": "send_message", "group_id": quiet_group.group_id,
                                                "content": f"ws {i}", "client_msg_id": f"ws-{i}"})
                answers.append(frame["type"] if frame["type"] == "message_ack" else frame["code"])
            return answers

    assert run(scenario) == ["message_ack", "message_ack", "RATE_LIMITED"]
    refused = _http_send(client_for(doctor), quiet_group, "http refused")
    assert_error(refused, 429, "RATE_LIMITED")
    assert int(refused.headers["Retry-After"]) >= 1
    assert Message.objects.filter(group=quiet_group).count() == 2


@pytest.mark.parametrize("body", ["[" * 100_000, "[" * 100 + "]" * 100, '{"a":' * 50 + "1" + "}" * 50])
def test_a_deeply_nested_body_is_a_400_not_a_500(doctor, quiet_group, client_for, body):
    answer = client_for(doctor).generic("POST", "/api/message/send", body, content_type="application/json")
    error = assert_error(answer, 400, "VALIDATION_ERROR")
    assert "traceback" not in json.dumps(error).lower()
    assert Message.objects.count() == 0


def test_a_body_nested_within_the_limit_is_read_as_usual(doctor, quiet_group, client_for):
    body = {"group_id": quiet_group.group_id, "content": "fine", "extra": json.loads("[" * 20 + "]" * 20)}
    assert client_for(doctor).post("/api/message/send", body, format="json").status_code == 201


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, '{"type":"ping","x":' + "[" * 40 + "]" * 40 + "}"])
def test_a_deeply_nested_frame_gets_an_error_frame_and_the_connection_stays(doctor, text):
    async def scenario():
        async with connected(doctor) as ws:
            error = await ask(ws, text)
            pong = await ask(ws, {"type": "ping"})
            return error, pong

    error, pong = run(scenario)
    assert error["type"] == "error" and error["code"] == "VALIDATION_ERROR" and "nest" in error["message"]
    assert pong["type"] == "pong"


def test_password_logins_are_throttled_per_username(make_user, client_for, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.IM_LOGIN_RATE_PER_USERNAME = "3/min"
    make_user(Role.DOCTOR, username="dr_guess", password="correct-horse-battery-9")
    anyone = client_for()
    for _ in range(3):
        assert anyone.post("/api/auth/token", {"username": "dr_guess", "password": "wrong"},
                           format="json").status_code == 401
    refused = anyone.post("/api/auth/token", {"username": "DR_GUESS", "password": "correct-horse-battery-9"},
                          format="json")
    assert_error(refused, 429, "RATE_LIMITED")
    assert int(refused.headers["Retry-After"]) >= 1
    # Another account from the same address is not locked out by it.
    make_user(Role.DOCTOR, username="dr_other", password="correct-horse-battery-9")
    assert anyone.post("/api/auth/token", {"username": "dr_other", "password": "correct-horse-battery-9"},
                       format="json").status_code == 200


def test_password_logins_are_throttled_per_client_address(make_user, client_for, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.IM_LOGIN_RATE_PER_ADDRESS = "4/min"
    anyone = client_for()
    answers = [anyone.post("/api/auth/token", {"username": f"nobody_{i}", "password": "x"}, format="json")
               for i in range(5)]
    assert [a.status_code for a in answers] == [401, 401, 401, 401, 429]
