"""What one send costs: a fixed, small number of database round trips over HTTP and over the WebSocket, and a
push serialized once: every member gets the same text, the message's fields in the contract's order plus type."""
import json

import pytest
from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.test.utils import CaptureQueriesContext

from chat.realtime import frame_text, message_frame
from chat.serializers import message_data
from chat.services import message_send
from tests.support.ws import connected, db, receive_many, run, send_message
from users.models import Role

pytestmark = pytest.mark.usefixtures("fresh_channel_layer")


# Besides the transaction's BEGIN and COMMIT: the caller's user (JWT), the group with the caller's in-group role,
# then the seq bump (which also checks client_msg_id) and the INSERT, which PostgreSQL runs as one statement.
def store_statements() -> int:
    return 1 if connection.vendor == "postgresql" else 2


HTTP_SEND_QUERIES = 2
TRANSACTION_CONTROL = ("BEGIN", "SAVEPOINT", "RELEASE", "COMMIT", "ROLLBACK")


def send(client, group, **extra):
    return client.post("/api/message/send", {"group_id": group.group_id, "content": "Vitals are stable", **extra},
                       format="json")


@pytest.mark.django_db
@pytest.mark.parametrize("extra", [{}, {"client_msg_id": "ward-7-1"}], ids=["plain", "client_msg_id"])
def test_an_http_send_costs_a_fixed_number_of_queries(care_group, doctor, client_for, extra, settings):
    settings.AUTH_USER_CACHE_SECONDS = 0  # the user's row read (the cache spares it: core/test_auth_user_cache.py)
    client = client_for(doctor)
    send(client, care_group, client_msg_id="warm-up")  # the first request of a process loads more

    with CaptureQueriesContext(connection) as queries:
        response = send(client, care_group, **extra)

    assert response.status_code == 201, response.content
    sent = [q["sql"] for q in queries if not q["sql"].startswith(TRANSACTION_CONTROL)]
    assert len(sent) == HTTP_SEND_QUERIES + store_statements(), "\n".join(sent)


@pytest.mark.django_db
def test_an_idempotent_repeat_writes_nothing(care_group, doctor, client_for):
    client = client_for(doctor)
    first = send(client, care_group, client_msg_id="ward-7-2")

    with CaptureQueriesContext(connection) as queries:
        again = send(client, care_group, client_msg_id="ward-7-2")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert not [q["sql"] for q in queries if q["sql"].startswith(("INSERT", "DELETE"))]


@pytest.mark.django_db
def test_a_non_member_is_refused_after_one_group_query(care_group, outsider, client_for):
    with CaptureQueriesContext(connection) as queries:
        response = send(client_for(outsider), care_group)

    assert response.status_code == 403 and response.json()["error"]["code"] == "NOT_GROUP_MEMBER"
    assert len(queries) <= 2  # the caller, and the group with the caller's role


@pytest.fixture
def statements(monkeypatch):
    """SQL statements run through Django's cursors by any thread (a WebSocket send runs in a thread pool)."""
    seen = []
    execute = CursorWrapper._execute

    def counted(self, sql, params, *args):
        seen.append(sql)
        return execute(self, sql, params, *args)

    monkeypatch.setattr(CursorWrapper, "_execute", counted)
    return seen


@pytest.mark.django_db(transaction=True)
def test_a_websocket_send_costs_a_fixed_number_of_statements(doctor, patient, quiet_group, statements):
    async def scenario():
        async with connected(doctor) as ws:
            await ws.send_json_to({"type": "send_message", "group_id": quiet_group.group_id, "content": "warm-up"})
            await receive_many(ws, 2)  # its ack and its push
            before = len(statements)
            ack = await send_message(ws, {"type": "send_message", "group_id": quiet_group.group_id,
                                          "content": "Fluids at 10:00", "client_msg_id": "ws-1"})
            return ack, [sql for sql in statements[before:] if not sql.startswith(TRANSACTION_CONTROL)]

    ack, sent = run(scenario)
    assert ack["type"] == "message_ack", ack
    # The group with the sender's role, the seq bump (with the client_msg_id check) and the INSERT, in a
    # transaction; the user was loaded when the connection opened.
    assert len(sent) == 1 + store_statements(), "\n".join(sent)


@pytest.mark.django_db(transaction=True)
def test_every_member_gets_the_same_frame_text(doctor, patient, assistant, quiet_group, client_for):
    async def scenario():
        async with connected(doctor) as ws_doctor, connected(patient) as ws_patient, \
                connected(assistant) as ws_assistant:
            response = await db(client_for(patient).post)(
                "/api/message/send", {"group_id": quiet_group.group_id, "content": "Is it \"normal\"? ✓",
                                      "client_msg_id": "p-1"}, format="json")
            texts = [await ws.receive_from(timeout=2) for ws in (ws_doctor, ws_patient, ws_assistant)]
            return response.json(), texts

    sent, texts = run(scenario)
    assert len(set(texts)) == 1
    assert texts[0] == json.dumps({**sent, "type": "message"}, separators=(",", ":"))


@pytest.mark.django_db
def test_an_ai_reply_is_pushed_with_its_own_type(care_group, patient, assistant):
    question, _ = message_send(sender=patient, group=care_group, content="Can I eat?")
    reply, _ = message_send(sender=assistant, group=care_group, content="After noon.", msg_type="AI_REPLY",
                            reply_to=question)

    frame = json.loads(frame_text(message_frame(reply)))
    assert frame == {**message_data(reply), "type": "ai_reply"} and list(frame)[-1] == "type"
    assert frame["reply_to"] == question.message_id and frame["from_role"] == Role.AI_ASSISTANT
