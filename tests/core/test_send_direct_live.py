"""The send path on a server's event loop (chat.gate, chat.services.message_send_direct), in a real server on
PostgreSQL and Redis: it answers exactly as the DRF view does, stores what message_send stores, refuses what it
refuses, and hands to the ORM path what it must (a patient's message to a group whose AI is on)."""
import asyncio
import re
import time

import httpx
import pytest

from ai_bridge.models import AIInteractionRecord
from chat.models import Message
from groups.models import ChatGroup
from groups.services import group_create, member_add
from tests.support.api import access_token
from tests.support.live import needs_real_services
from tests.support.teams import care_team
from tests.support.wsclient import Client
from users.models import Role
from users.services import user_deactivate

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]

METRICS_TOKEN = "direct-send-metrics"


@pytest.fixture
def server(start_server):
    return start_server("direct", METRICS_TOKEN=METRICS_TOKEN)


def _paths(server) -> dict[str, float]:
    """Messages this server stored, by path (its Prometheus counter)."""
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    return {path: float(n) for path, n in re.findall(r'im_message_send_path_total\{path="(\w+)"\} (\S+)', text)}


def _send(server, user, body: dict, path: str = "/api/message/send", **headers) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {access_token(user)}", **headers})


def _known(server, *users) -> None:
    """Have the server hold the users in its cache, as it does once they have been seen (its subscription to
    user changes starts with the first request, and a user read before it listens is not kept)."""
    for _ in range(2):
        for user in users:
            httpx.get(f"{server.url}/api/user/me", headers={"Authorization": f"Bearer {access_token(user)}"})
        time.sleep(0.5)


def _same_headers(response: httpx.Response) -> dict:
    return {k: v for k, v in response.headers.items() if k not in ("content-length", "x-request-id", "date")}


@pytest.fixture
def team(make_user):
    doctor, (patient,), group = care_team(make_user, 1)
    return doctor, patient, group


def test_a_send_on_the_event_loop_answers_as_the_view_does(server, team):
    _, patient, group = team
    _known(server, patient)
    # The first send of the process is answered by the view; the direct path answers with its headers after it.
    by_view = _send(server, patient, {"group_id": group.group_id, "content": "first: the view answers"})
    before = _paths(server)
    direct = _send(server, patient, {"group_id": group.group_id, "content": "  ünïcode \u2028 trimmed  ",
                                     "client_msg_id": "p-1"})
    again = _send(server, patient, {"group_id": group.group_id, "content": "  ünïcode \u2028 trimmed  ",
                                    "client_msg_id": "p-1"})
    # A query string (ignored by the view) sends the same request through Django.
    through_django = _send(server, patient, {"group_id": group.group_id, "content": "by Django"},
                           path="/api/message/send?x=1")
    after = _paths(server)

    assert after.get("direct", 0) - before.get("direct", 0) == 1  # that of `direct` alone
    assert by_view.status_code == direct.status_code == through_django.status_code == 201
    assert _same_headers(direct) == _same_headers(through_django) == _same_headers(by_view)
    assert direct.headers["x-request-id"] != through_django.headers["x-request-id"]
    stored = Message.objects.get(message_id=direct.json()["message_id"])
    assert direct.json() == {
        "message_id": stored.message_id, "group_id": group.group_id, "seq": 2, "from_user_id": patient.user_id,
        "from_role": "PATIENT", "msg_type": "TEXT", "content": "ünïcode \u2028 trimmed", "client_msg_id": "p-1",
        "reply_to": None, "created_at": stored.created_at.isoformat().replace("+00:00", "Z")}
    assert "\\u2028" in direct.text  # DRF's renderer escapes it; so does the direct answer
    assert again.status_code == 200 and again.json() == direct.json()  # the repeat, answered by the view
    assert through_django.json()["seq"] == 3
    assert list(Message.objects.filter(group=group).order_by("seq").values_list("seq", flat=True)) == [1, 2, 3]
    assert ChatGroup.objects.get(pk=group.pk).last_seq == 3


def test_refusals_are_the_views(server, team, make_user):
    doctor, patient, group = team
    stranger = make_user(Role.PATIENT)
    _known(server, doctor, stranger)
    _send(server, doctor, {"group_id": group.group_id, "content": "warm"})

    cases = [
        (stranger, {"group_id": group.group_id, "content": "let me in"}, 403, "NOT_GROUP_MEMBER"),
        (doctor, {"group_id": "group_nosuchgroup", "content": "anyone?"}, 404, "NOT_FOUND"),
        (doctor, {"group_id": group.group_id, "content": "   "}, 400, "VALIDATION_ERROR"),
        (doctor, {"group_id": group.group_id, "content": "x" * 5000}, 413, "PAYLOAD_TOO_LARGE"),
        (doctor, {"group_id": group.group_id, "content": "an image", "msg_type": "IMAGE"}, 400, "VALIDATION_ERROR"),
        (doctor, {"group_id": group.group_id, "content": "as the AI", "msg_type": "AI_REPLY"}, 400,
         "VALIDATION_ERROR"),
        (doctor, {"group_id": group.group_id, "content": 7}, 400, "VALIDATION_ERROR"),
        # Never to the database: PostgreSQL refuses NUL with an error, and a lone surrogate cannot be encoded.
        (doctor, {"group_id": group.group_id + "\u0000", "content": "hi"}, 400, "VALIDATION_ERROR"),
    ]
    for user, body, status, code in cases:
        answer = _send(server, user, body)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), body
    surrogate = httpx.post(f"{server.url}/api/message/send", content=b'{"group_id": "group_\\ud800", "content": "hi"}',
                           headers={"Authorization": f"Bearer {access_token(doctor)}",
                                    "Content-Type": "application/json"})
    assert surrogate.status_code == 400 and surrogate.json()["error"]["code"] == "VALIDATION_ERROR"
    bad_token = httpx.post(f"{server.url}/api/message/send", headers={"Authorization": "Bearer nope"},
                           json={"group_id": group.group_id, "content": "hi"})
    assert bad_token.status_code == 401 and bad_token.json()["error"]["code"] == "NOT_AUTHENTICATED"
    assert list(Message.objects.filter(group=group).values_list("content", flat=True)) == ["warm"]


def test_a_doctor_lifts_the_ai_pause_and_a_patient_still_reaches_the_ai(server, make_user):
    doctor, patient, assistant = make_user(Role.DOCTOR), make_user(Role.PATIENT), make_user(Role.AI_ASSISTANT)
    group = group_create(creator=doctor, group_name="AI on")
    member_add(group=group, user=patient, user_role=Role.PATIENT)
    member_add(group=group, user=assistant, user_role=Role.AI_ASSISTANT)
    _known(server, doctor, patient)
    _send(server, doctor, {"group_id": group.group_id, "content": "warm"})
    ChatGroup.objects.filter(pk=group.pk).update(ai_paused=True)
    before = _paths(server)

    assert _send(server, doctor, {"group_id": group.group_id, "content": "I am here now"}).status_code == 201
    assert ChatGroup.objects.get(pk=group.pk).ai_paused is False
    asked = _send(server, patient, {"group_id": group.group_id, "content": "Is this rash normal?"})
    assert asked.status_code == 201
    # The AI bridge's record is opened in the message's own transaction: the ORM path stored it.
    assert AIInteractionRecord.objects.filter(user_message__message_id=asked.json()["message_id"]).exists()
    after = _paths(server)
    assert after.get("direct", 0) - before.get("direct", 0) == 1
    assert after.get("orm", 0) - before.get("orm", 0) >= 1


def test_a_websocket_send_on_the_event_loop_is_acknowledged_and_pushed(server, team):
    doctor, patient, group = team
    before = _paths(server)

    async def scenario():
        sender = Client("doctor", doctor.user_id, access_token(doctor))
        reader = Client("patient", patient.user_id, access_token(patient))
        await sender.connect(server.ws_url)
        await reader.connect(server.ws_url)
        await sender.send({"type": "send_message", "group_id": group.group_id, "content": " hello ",
                           "client_msg_id": "ws-1"})
        ack = await sender.wait_for(lambda f: f["type"] in ("message_ack", "error"))
        await sender.send({"type": "send_message", "group_id": group.group_id, "content": "", "client_msg_id": "ws-2"})
        refused = await sender.wait_for(lambda f: f.get("client_msg_id") == "ws-2" and f["type"] == "error")
        push = await reader.wait_for(lambda f: f["type"] == "message")
        await sender.close()
        await reader.close()
        return ack, refused, push

    ack, refused, push = asyncio.run(scenario())
    assert ack["type"] == "message_ack" and ack["message"]["content"] == "hello" and ack["message"]["seq"] == 1
    assert refused["code"] == "VALIDATION_ERROR"
    assert {k: v for k, v in push.items() if k != "type"} == ack["message"]
    assert _paths(server).get("direct", 0) - before.get("direct", 0) == 1
    assert Message.objects.filter(group=group).count() == 1


def test_concurrent_sends_on_the_event_loop_keep_the_seq_gapless_and_repeats_single(start_server, team):
    doctor, patient, group = team
    server = start_server("busy", METRICS_TOKEN=METRICS_TOKEN, IM_SEND_RATE="100000/min")
    _known(server, doctor, patient)
    _send(server, doctor, {"group_id": group.group_id, "content": "warm"})
    before = _paths(server)

    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            def send(user, content, client_msg_id):
                return http.post("/api/message/send", headers={"Authorization": f"Bearer {access_token(user)}"},
                                 json={"group_id": group.group_id, "content": content, "client_msg_id": client_msg_id})

            return await asyncio.gather(*[send(doctor, f"d{i}", f"d{i}") for i in range(30)],
                                        *[send(patient, "the same retry", "retry-1") for _ in range(20)])

    answers = asyncio.run(scenario())
    assert all(a.status_code in (200, 201) for a in answers), [a.text for a in answers if a.status_code >= 300]
    retries = answers[30:]
    assert len({a.json()["message_id"] for a in retries}) == 1
    assert [a.status_code for a in retries].count(201) == 1
    seqs = list(Message.objects.filter(group=group).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 33))  # warm, 30 distinct, one retry: no gap, no repeat
    assert ChatGroup.objects.get(pk=group.pk).last_seq == 32
    assert _paths(server).get("direct", 0) - before.get("direct", 0) >= 30


def test_a_user_the_process_has_not_seen_is_read_on_the_event_loop_and_a_deactivated_one_refused(server, team):
    doctor, patient, group = team
    _known(server, doctor)  # the process listens for user changes from now on; patient it has never read
    _send(server, doctor, {"group_id": group.group_id, "content": "warm"})
    before = _paths(server)
    first = _send(server, patient, {"group_id": group.group_id, "content": "my first message here"})
    assert first.status_code == 201
    assert _paths(server).get("direct", 0) - before.get("direct", 0) == 1

    user_deactivate(user=patient)
    refused = _send(server, patient, {"group_id": group.group_id, "content": "still me?"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "NOT_AUTHENTICATED"
    assert Message.objects.filter(group=group, sender=patient).count() == 1


def test_a_message_stored_on_the_event_loop_is_encrypted_at_rest(start_server, team, settings):
    from cryptography.fernet import Fernet
    from django.db import connection

    doctor, patient, group = team
    key = Fernet.generate_key().decode()
    settings.IM_ENCRYPTION_KEYS = [key]  # this process reads what the server writes
    server = start_server("sealed", METRICS_TOKEN=METRICS_TOKEN, IM_ENCRYPTION_KEYS=key)
    _known(server, doctor)
    _send(server, doctor, {"group_id": group.group_id, "content": "warm"})
    before = _paths(server)
    sent = _send(server, doctor, {"group_id": group.group_id, "content": "blood pressure 150/95"})
    assert sent.status_code == 201 and _paths(server).get("direct", 0) - before.get("direct", 0) == 1

    with connection.cursor() as cursor:
        cursor.execute("SELECT content FROM messages WHERE message_id = %s", [sent.json()["message_id"]])
        stored = cursor.fetchone()[0]
    assert stored.startswith("enc$f$") and "150/95" not in stored
    assert Message.objects.get(message_id=sent.json()["message_id"]).content == "blood pressure 150/95"
