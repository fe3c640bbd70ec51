"""Every client frame and its answer, and every bad frame's error, after which the connection keeps working."""
import asyncio
import json

import pytest

from chat.models import Message
from chat.services import message_send
from groups.services import group_create
from tests.support.ws import ask, assert_usable, connected, nothing, receive, receive_many, run
from users.models import Role

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_channel_layer")]


@pytest.fixture
def foreign_group(make_user):
    """A group none of the `quiet_group` members belongs to."""
    return group_create(creator=make_user(Role.DOCTOR), group_name="Elsewhere", ai_enabled=False)


# --- send_message ----------------------------------------------------------------------------------


def test_send_message_is_acked_and_pushed_to_every_connection_of_every_member(
        doctor, patient, assistant, outsider, quiet_group):
    group_id = quiet_group.group_id

    async def scenario():
        async with connected(doctor) as sender, connected(doctor) as sender_2, connected(patient) as ws_patient, \
                connected(assistant) as ws_assistant, connected(outsider) as ws_outsider:
            await sender.send_json_to({"type": "send_message", "group_id": group_id,
                                       "content": "  Blood pressure is fine.  ", "client_msg_id": "c-1"})
            own = await receive_many(sender, 2)
            pushed = [await receive(ws) for ws in (sender_2, ws_patient, ws_assistant)]
            await nothing(sender, sender_2, ws_patient, ws_assistant, ws_outsider)
            return own, pushed

    own, pushed = run(scenario)
    ack = own["message_ack"]
    assert ack["client_msg_id"] == "c-1"
    message = ack["message"]
    assert message["message_id"].startswith("msg_")
    assert message["group_id"] == group_id
    assert message["seq"] == 1
    assert message["content"] == "Blood pressure is fine."
    assert message["client_msg_id"] == "c-1"
    assert message["from_user_id"] == doctor.user_id and message["from_role"] == "DOCTOR"
    assert message["msg_type"] == "TEXT" and message["reply_to"] is None
    assert message["created_at"].endswith("Z")
    assert own["message"] == {**message, "type": "message"}
    assert pushed == [{**message, "type": "message"}] * 3
    stored = Message.objects.get(message_id=message["message_id"])
    assert (stored.seq, stored.content) == (1, "Blood pressure is fine.")


def test_send_message_without_client_msg_id(patient, doctor, quiet_group):
    async def scenario():
        async with connected(patient) as sender, connected(doctor) as ws_doctor:
            await sender.send_json_to({"type": "send_message", "group_id": quiet_group.group_id, "content": "hi"})
            own = await receive_many(sender, 2)
            return own, await receive(ws_doctor)

    own, pushed = run(scenario)
    assert own["message_ack"]["client_msg_id"] is None
    assert own["message_ack"]["message"]["client_msg_id"] is None
    assert own["message_ack"]["message"]["from_role"] == "PATIENT"
    assert pushed == own["message"]


def test_send_message_image(doctor, patient, quiet_group):
    url = "https://images.example/x-ray.png"

    async def scenario():
        async with connected(doctor) as sender, connected(patient) as ws_patient:
            await sender.send_json_to({"type": "send_message", "group_id": quiet_group.group_id, "content": url,
                                       "msg_type": "IMAGE"})
            own = await receive_many(sender, 2)
            return own, await receive(ws_patient)

    own, pushed = run(scenario)
    assert own["message_ack"]["message"]["msg_type"] == "IMAGE"
    assert pushed["type"] == "message" and pushed["msg_type"] == "IMAGE" and pushed["content"] == url


def test_repeating_a_client_msg_id_returns_the_first_message_and_pushes_nothing(doctor, patient, quiet_group):
    group_id = quiet_group.group_id

    async def scenario():
        async with connected(doctor) as sender, connected(doctor) as sender_2, connected(patient) as ws_patient:
            frame = {"type": "send_message", "group_id": group_id, "content": "Take two tablets.",
                     "client_msg_id": "dose-1"}
            await sender.send_json_to(frame)
            first = (await receive_many(sender, 2))["message_ack"]
            await receive(sender_2)
            await receive(ws_patient)

            repeat = await ask(sender, {**frame, "content": "Take two tablets. (resent)"})
            await nothing(sender, sender_2, ws_patient)
            return first, repeat

    first, repeat = run(scenario)
    assert repeat["type"] == "message_ack" and repeat["client_msg_id"] == "dose-1"
    assert repeat["message"] == first["message"]
    assert Message.objects.filter(group=quiet_group).count() == 1


# --- sync --------------------------------------------------------------------------------------------


def test_sync_returns_the_messages_after_after_seq_ascending(doctor, patient, quiet_group):
    for n in range(1, 6):
        message_send(sender=doctor, group=quiet_group, content=f"note {n}")
    group_id = quiet_group.group_id

    async def scenario():
        async with connected(patient) as ws:
            answers = [await ask(ws, {"type": "sync", "group_id": group_id, "after_seq": after_seq, **extra})
                       for after_seq, extra in ((2, {}), (0, {"limit": 2}), (3, {"limit": 2}), (5, {}),
                                                (2**64, {}))]
            await nothing(ws)
            return answers

    after_2, first_two, last_two, none, beyond = run(scenario)
    for answer in (after_2, first_two, last_two, none, beyond):
        assert answer["type"] == "sync_result" and answer["group_id"] == group_id
    assert [m["seq"] for m in after_2["messages"]] == [3, 4, 5] and after_2["has_more"] is False
    assert [m["content"] for m in after_2["messages"]] == ["note 3", "note 4", "note 5"]
    assert [m["seq"] for m in first_two["messages"]] == [1, 2] and first_two["has_more"] is True
    assert [m["seq"] for m in last_two["messages"]] == [4, 5] and last_two["has_more"] is False
    assert none["messages"] == [] and none["has_more"] is False
    assert beyond["messages"] == [] and beyond["has_more"] is False
    assert set(after_2["messages"][0]) == {"message_id", "group_id", "seq", "from_user_id", "from_role",
                                           "msg_type", "content", "client_msg_id", "reply_to", "created_at"}


# --- ping, typing ------------------------------------------------------------------------------------


def test_ping_is_answered_with_pong(patient):
    async def scenario():
        async with connected(patient) as ws:
            return await ask(ws, {"type": "ping"})

    pong = run(scenario)
    assert pong["type"] == "pong" and pong["server_time"].endswith("Z")


def test_typing_reaches_the_other_members_but_not_the_typist(doctor, patient, assistant, outsider, quiet_group):
    group_id = quiet_group.group_id

    async def scenario():
        async with connected(patient) as typist, connected(patient) as typist_2, connected(doctor) as ws_doctor, \
                connected(doctor) as ws_doctor_2, connected(assistant) as ws_assistant, \
                connected(outsider) as ws_outsider:
            await typist.send_json_to({"type": "typing", "group_id": group_id})
            seen = [await receive(ws) for ws in (ws_doctor, ws_doctor_2, ws_assistant)]
            await nothing(typist, typist_2, ws_doctor, ws_doctor_2, ws_assistant, ws_outsider)
            return seen

    seen = run(scenario)
    assert seen == [{"type": "typing", "group_id": group_id, "user_id": patient.user_id}] * 3


# --- bad frames --------------------------------------------------------------------------------------

OWN, FOREIGN, UNKNOWN = "{own}", "{foreign}", "group_0000000000nosuchgroup00000"

BAD_FRAMES = [
    ("not json", "{type: ping", "VALIDATION_ERROR"),
    ("a list", "[1, 2]", "VALIDATION_ERROR"),
    ("a string", '"ping"', "VALIDATION_ERROR"),
    ("no type", {"group_id": OWN}, "VALIDATION_ERROR"),
    ("unknown type", {"type": "shout", "client_msg_id": "c-1"}, "VALIDATION_ERROR"),
    ("type not a string", {"type": ["ping"]}, "VALIDATION_ERROR"),
    ("send without group_id", {"type": "send_message", "content": "hi", "client_msg_id": "c-2"},
     "VALIDATION_ERROR"),
    ("send without content", {"type": "send_message", "group_id": OWN, "client_msg_id": "c-3"},
     "VALIDATION_ERROR"),
    ("send blank content", {"type": "send_message", "group_id": OWN, "content": "   "}, "VALIDATION_ERROR"),
    ("send content not text", {"type": "send_message", "group_id": OWN, "content": 42}, "VALIDATION_ERROR"),
    ("send as AI_REPLY", {"type": "send_message", "group_id": OWN, "content": "hi", "msg_type": "AI_REPLY"},
     "VALIDATION_ERROR"),
    ("send long client_msg_id", {"type": "send_message", "group_id": OWN, "content": "hi",
                                 "client_msg_id": "x" * 65}, "VALIDATION_ERROR"),
    ("send to a group not joined", {"type": "send_message", "group_id": FOREIGN, "content": "hi",
                                    "client_msg_id": "c-4"}, "NOT_GROUP_MEMBER"),
    ("send to no such group", {"type": "send_message", "group_id": UNKNOWN, "content": "hi",
                               "client_msg_id": "c-5"}, "NOT_FOUND"),
    ("send group_id not a string", {"type": "send_message", "group_id": {"id": 1}, "content": "hi"},
     "VALIDATION_ERROR"),
    ("send content with NUL", {"type": "send_message", "group_id": OWN, "content": "a\u0000b",
                               "client_msg_id": "c-6"}, "VALIDATION_ERROR"),
    ("send content with a lone surrogate", {"type": "send_message", "group_id": OWN, "content": "a\ud800b"},
     "VALIDATION_ERROR"),
    ("send client_msg_id with NUL", {"type": "send_message", "group_id": OWN, "content": "hi",
                                     "client_msg_id": "c\u0000"}, "VALIDATION_ERROR"),
    ("send group_id with NUL", {"type": "send_message", "group_id": "group_\u0000", "content": "hi"},
     "VALIDATION_ERROR"),
    ("typing without group_id", {"type": "typing"}, "VALIDATION_ERROR"),
    ("typing group_id with NUL", {"type": "typing", "group_id": "\u0000"}, "VALIDATION_ERROR"),
    ("typing group_id not a string", {"type": "typing", "group_id": [OWN]}, "VALIDATION_ERROR"),
    ("typing in a group not joined", {"type": "typing", "group_id": FOREIGN}, "NOT_GROUP_MEMBER"),
    ("typing in no such group", {"type": "typing", "group_id": UNKNOWN}, "NOT_FOUND"),
    ("sync without group_id", {"type": "sync", "after_seq": 0}, "VALIDATION_ERROR"),
    ("sync negative after_seq", {"type": "sync", "group_id": OWN, "after_seq": -1}, "VALIDATION_ERROR"),
    ("sync after_seq as text", {"type": "sync", "group_id": OWN, "after_seq": "3"}, "VALIDATION_ERROR"),
    ("sync fractional after_seq", {"type": "sync", "group_id": OWN, "after_seq": 1.5}, "VALIDATION_ERROR"),
    ("sync boolean after_seq", {"type": "sync", "group_id": OWN, "after_seq": True}, "VALIDATION_ERROR"),
    ("sync limit zero", {"type": "sync", "group_id": OWN, "after_seq": 0, "limit": 0}, "VALIDATION_ERROR"),
    ("sync limit too big", {"type": "sync", "group_id": OWN, "after_seq": 0, "limit": 501}, "VALIDATION_ERROR"),
    ("sync a group not joined", {"type": "sync", "group_id": FOREIGN, "after_seq": 0}, "NOT_GROUP_MEMBER"),
    ("sync no such group", {"type": "sync", "group_id": UNKNOWN, "after_seq": 0}, "NOT_FOUND"),
]


@pytest.mark.parametrize("frame, code", [pytest.param(frame, code, id=name) for name, frame, code in BAD_FRAMES])
def test_a_bad_frame_gets_an_error_frame_and_the_connection_stays_usable(
        doctor, patient, quiet_group, foreign_group, frame, code):
    if isinstance(frame, dict):
        text = json.dumps(frame).replace(OWN, quiet_group.group_id).replace(FOREIGN, foreign_group.group_id)
    else:
        text = frame

    async def scenario():
        async with connected(doctor) as ws, connected(patient) as ws_patient:
            error = await ask(ws, text)
            await assert_usable(ws)
            # The next thing the other member sees is this typing: the bad frame pushed nothing before it.
            await ws.send_json_to({"type": "typing", "group_id": quiet_group.group_id})
            return error, await receive(ws_patient)

    error, next_seen = run(scenario)
    assert next_seen == {"type": "typing", "group_id": quiet_group.group_id, "user_id": doctor.user_id}
    assert error["type"] == "error" and error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    if isinstance(frame, dict) and "client_msg_id" in frame:
        assert error["client_msg_id"] == frame["client_msg_id"]
    else:
        assert "client_msg_id" not in error
    assert not Message.objects.exists()


def test_content_longer_than_the_limit_is_payload_too_large(settings, doctor, patient, quiet_group):
    settings.IM_MAX_MESSAGE_CHARS = 10
    group_id = quiet_group.group_id

    async def scenario():
        async with connected(doctor) as ws, connected(patient) as ws_patient:
            error = await ask(ws, {"type": "send_message", "group_id": group_id, "content": "x" * 11,
                                   "client_msg_id": "long-1"})
            await nothing(ws, ws_patient)
            await ws.send_json_to({"type": "send_message", "group_id": group_id, "content": f"  {'y' * 10}  "})
            fits = await receive_many(ws, 2)
            return error, fits

    error, fits = run(scenario)
    assert error == {"type": "error", "code": "PAYLOAD_TOO_LARGE", "message": error["message"],
                     "client_msg_id": "long-1"}
    assert fits["message_ack"]["message"]["content"] == "y" * 10


def test_a_frame_larger_than_the_limit_is_refused_but_not_the_connection(settings, doctor, patient, quiet_group):
    settings.WS_MAX_FRAME_BYTES = 200
    group_id = quiet_group.group_id

    def send_frame(content):
        return {"type": "send_message", "group_id": group_id, "content": content}

    async def scenario():
        async with connected(doctor) as ws, connected(patient) as ws_patient:
            too_big = await ask(ws, send_frame("x" * 200))
            # 100 characters, but 200 bytes in UTF-8: the limit is in bytes.
            too_many_bytes = await ask(ws, json.dumps(send_frame("é" * 100), ensure_ascii=False))
            await ws.send_to(bytes_data=json.dumps(send_frame("z" * 200)).encode())
            too_big_binary = await receive(ws)
            await nothing(ws, ws_patient)
            await assert_usable(ws)
            return too_big, too_many_bytes, too_big_binary

    for error in run(scenario):
        assert error["type"] == "error" and error["code"] == "PAYLOAD_TOO_LARGE", error
    assert not Message.objects.exists()


def test_too_many_frames_are_rate_limited_then_allowed_again(settings, doctor, patient, quiet_group):
    settings.WS_RATE_MESSAGES = 3
    settings.WS_RATE_INTERVAL = 0.5
    group_id = quiet_group.group_id

    async def scenario():
        async with connected(doctor) as ws, connected(patient) as ws_patient:
            pongs = [await ask(ws, {"type": "ping"}) for _ in range(3)]
            limited = await ask(ws, {"type": "send_message", "group_id": group_id, "content": "hi",
                                     "client_msg_id": "fast-4"})
            limited_ping = await ask(ws, {"type": "ping"})
            await nothing(ws, ws_patient)
            await asyncio.sleep(settings.WS_RATE_INTERVAL + 0.1)
            await assert_usable(ws)
            return pongs, limited, limited_ping

    pongs, limited, limited_ping = run(scenario)
    assert [p["type"] for p in pongs] == ["pong"] * 3
    assert limited["type"] == "error" and limited["code"] == "RATE_LIMITED", limited
    assert limited["client_msg_id"] == "fast-4"
    assert limited_ping["type"] == "error" and limited_ping["code"] == "RATE_LIMITED"
    assert "client_msg_id" not in limited_ping
    assert not Message.objects.exists()


def test_staff_outside_the_group_cannot_type_into_it(doctor, staff, quiet_group):
    group_id = quiet_group.group_id

    async def scenario():
        async with connected(staff) as ws_staff, connected(doctor) as ws_doctor:
            refused = await ask(ws_staff, {"type": "typing", "group_id": group_id})
            await nothing(ws_doctor)
            return refused

    refused = run(scenario)
    assert refused["type"] == "error" and refused["code"] == "NOT_GROUP_MEMBER"
