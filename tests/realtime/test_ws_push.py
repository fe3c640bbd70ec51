"""Every new message reaches every open connection of its group's members, however it was sent: over HTTP,
through the service (admin, AI bridge), as an AI reply."""
import pytest

from chat.services import message_send
from groups.services import group_create, member_add
from tests.support.ws import connected, db, nothing, receive, run
from users.models import Role

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_channel_layer")]


def test_a_message_sent_over_http_is_pushed_to_every_member_the_sender_included(
        doctor, patient, assistant, outsider, quiet_group, client_for):
    async def scenario():
        async with connected(doctor) as ws_doctor, connected(patient) as ws_patient, \
                connected(assistant) as ws_assistant, connected(outsider) as ws_outsider:
            response = await db(client_for(doctor).post)(
                "/api/message/send",
                {"group_id": quiet_group.group_id, "content": " From the ward PC ", "client_msg_id": "pc-1"},
                format="json")
            assert response.status_code == 201, response.content
            pushed = [await receive(ws) for ws in (ws_doctor, ws_patient, ws_assistant)]
            await nothing(ws_doctor, ws_patient, ws_assistant, ws_outsider)
            return response.json(), pushed

    sent, pushed = run(scenario)
    assert sent["content"] == "From the ward PC" and sent["seq"] == 1
    assert pushed == [{**sent, "type": "message"}] * 3


def test_an_http_repeat_of_a_client_msg_id_pushes_nothing(doctor, patient, quiet_group, client_for):
    body = {"group_id": quiet_group.group_id, "content": "Once", "client_msg_id": "once-1"}

    async def scenario():
        async with connected(patient) as ws:
            first = await db(client_for(doctor).post)("/api/message/send", body, format="json")
            pushed = await receive(ws)
            repeat = await db(client_for(doctor).post)("/api/message/send", body, format="json")
            await nothing(ws)
            return first, repeat, pushed

    first, repeat, pushed = run(scenario)
    assert (first.status_code, repeat.status_code) == (201, 200)
    assert repeat.json()["message_id"] == first.json()["message_id"] == pushed["message_id"]


def test_pushes_arrive_in_seq_order(doctor, patient, quiet_group, client_for):
    async def scenario():
        async with connected(patient) as ws:
            for n in range(1, 6):
                response = await db(client_for(doctor).post)(
                    "/api/message/send", {"group_id": quiet_group.group_id, "content": f"step {n}"}, format="json")
                assert response.status_code == 201, response.content
            return [await receive(ws) for _ in range(5)]

    pushed = run(scenario)
    assert [p["seq"] for p in pushed] == [1, 2, 3, 4, 5]
    assert [p["content"] for p in pushed] == [f"step {n}" for n in range(1, 6)]


def test_an_image_message_is_pushed_as_a_message(doctor, patient, quiet_group, client_for):
    url = "https://images.example/wound.jpg"

    async def scenario():
        async with connected(patient) as ws:
            response = await db(client_for(doctor).post)(
                "/api/message/send", {"group_id": quiet_group.group_id, "content": url, "msg_type": "IMAGE"},
                format="json")
            assert response.status_code == 201, response.content
            return await receive(ws)

    pushed = run(scenario)
    assert pushed["type"] == "message" and pushed["msg_type"] == "IMAGE" and pushed["content"] == url


def test_an_ai_reply_is_pushed_as_ai_reply(doctor, patient, assistant, quiet_group):
    question = message_send(sender=patient, group=quiet_group, content="Can I take ibuprofen?")[0]

    async def scenario():
        async with connected(doctor) as ws_doctor, connected(patient) as ws_patient, \
                connected(assistant) as ws_assistant:
            reply, _ = await db(message_send)(sender=assistant, group=quiet_group, content="Ask your doctor first.",
                                              msg_type="AI_REPLY", reply_to=question)
            pushed = [await receive(ws) for ws in (ws_doctor, ws_patient, ws_assistant)]
            await nothing(ws_doctor, ws_patient, ws_assistant)
            return reply.message_id, pushed

    reply_id, pushed = run(scenario)
    assert pushed[0]["type"] == "ai_reply"
    assert pushed[0]["message_id"] == reply_id
    assert pushed[0]["msg_type"] == "AI_REPLY" and pushed[0]["from_role"] == "AI_ASSISTANT"
    assert pushed[0]["from_user_id"] == assistant.user_id
    assert pushed[0]["reply_to"] == question.message_id and pushed[0]["seq"] == 2
    assert pushed[0]["content"] == "Ask your doctor first."
    assert pushed == [pushed[0]] * 3


def test_a_message_of_another_group_is_not_pushed(patient, outsider, make_user):
    theirs = group_create(creator=make_user(Role.DOCTOR), group_name="Theirs", ai_enabled=False)
    member_add(group=theirs, user=outsider, user_role=Role.PATIENT)

    async def scenario():
        async with connected(patient) as ws_patient, connected(outsider) as ws_outsider:
            await db(message_send)(sender=outsider, group=theirs, content="Not for you")
            pushed = await receive(ws_outsider)
            await nothing(ws_patient, ws_outsider)
            return pushed

    assert run(scenario)["content"] == "Not for you"
