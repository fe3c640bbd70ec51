"""Membership changes reach open connections at once: a new member starts receiving the group without
reconnecting, a removed one stops, and the others are told who came or went."""
import pytest

from chat.consumers import ChatConsumer
from chat.services import message_send
from groups.services import member_add, member_remove
from tests.support.ws import ask, connected, db, nothing, receive, receive_many, run
from users.models import Role

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_channel_layer")]


def joined(group, user, role) -> dict:
    return {"type": "member_joined", "group_id": group.group_id, "user_id": user.user_id, "user_role": role}


def left(group, user, role) -> dict:
    return {"type": "member_left", "group_id": group.group_id, "user_id": user.user_id, "user_role": role}


def test_an_added_user_gets_member_joined_then_the_groups_messages(doctor, patient, outsider, quiet_group):
    group_id = quiet_group.group_id

    async def scenario():
        async with connected(outsider) as newcomer, connected(outsider) as newcomer_2, \
                connected(doctor) as ws_doctor, connected(patient) as ws_patient:
            assert newcomer.hello["groups"] == []
            await db(member_add)(group=quiet_group, user=outsider, user_role=Role.PATIENT)
            told = [await receive(ws) for ws in (newcomer, newcomer_2, ws_doctor, ws_patient)]
            await nothing(newcomer, newcomer_2, ws_doctor, ws_patient)

            await ws_doctor.send_json_to({"type": "send_message", "group_id": group_id, "content": "Welcome!"})
            doctor_own = await receive_many(ws_doctor, 2)
            pushed = [await receive(ws) for ws in (newcomer, newcomer_2, ws_patient)]

            # The newcomer takes part as well: sends, types, syncs.
            await newcomer.send_json_to({"type": "send_message", "group_id": group_id, "content": "Thanks"})
            newcomer_own = await receive_many(newcomer, 2)
            reply_seen = [await receive(ws) for ws in (newcomer_2, ws_doctor, ws_patient)]
            await newcomer.send_json_to({"type": "typing", "group_id": group_id})
            typing_seen = [await receive(ws) for ws in (ws_doctor, ws_patient)]
            synced = await ask(newcomer_2, {"type": "sync", "group_id": group_id, "after_seq": 0})
            await nothing(newcomer, newcomer_2, ws_doctor, ws_patient)
            return told, doctor_own, pushed, newcomer_own, reply_seen, typing_seen, synced

    told, doctor_own, pushed, newcomer_own, reply_seen, typing_seen, synced = run(scenario)
    assert told == [joined(quiet_group, outsider, "PATIENT")] * 4
    welcome = doctor_own["message"]
    assert welcome["content"] == "Welcome!" and welcome["seq"] == 1
    assert pushed == [welcome] * 3
    thanks = newcomer_own["message"]
    assert thanks["from_user_id"] == outsider.user_id and thanks["from_role"] == "PATIENT" and thanks["seq"] == 2
    assert reply_seen == [thanks] * 3
    assert typing_seen == [{"type": "typing", "group_id": group_id, "user_id": outsider.user_id}] * 2
    assert [m["seq"] for m in synced["messages"]] == [1, 2]


def test_a_member_added_over_http_is_followed_by_its_open_connection(doctor, outsider, quiet_group, client_for):
    async def scenario():
        async with connected(outsider) as newcomer:
            response = await db(client_for(doctor).post)(
                f"/api/group/{quiet_group.group_id}/members",
                {"user_id": outsider.user_id, "user_role": "DOCTOR"}, format="json")
            assert response.status_code == 201, response.content
            told = await receive(newcomer)
            await db(message_send)(sender=doctor, group=quiet_group, content="Colleague joined")
            return told, await receive(newcomer)

    told, pushed = run(scenario)
    assert told == joined(quiet_group, outsider, "DOCTOR")
    assert pushed["type"] == "message" and pushed["content"] == "Colleague joined"


def test_a_removed_member_gets_member_left_and_nothing_more(doctor, patient, assistant, quiet_group):
    group_id = quiet_group.group_id

    async def scenario():
        async with connected(patient) as removed, connected(patient) as removed_2, \
                connected(doctor) as ws_doctor, connected(assistant) as ws_assistant:
            assert removed.hello["groups"] == [{"group_id": group_id, "last_seq": 0, "last_read_seq": 0,
                                                "unread_count": 0}]
            await db(member_remove)(group=quiet_group, user=patient)
            told = [await receive(ws) for ws in (removed, removed_2, ws_doctor, ws_assistant)]

            await ws_doctor.send_json_to({"type": "send_message", "group_id": group_id, "content": "After you left"})
            doctor_own = await receive_many(ws_doctor, 2)
            assistant_seen = await receive(ws_assistant)
            await db(message_send)(sender=assistant, group=quiet_group, content="Also after")
            await receive(ws_doctor)
            await receive(ws_assistant)
            await ws_doctor.send_json_to({"type": "typing", "group_id": group_id})
            await receive(ws_assistant)
            await nothing(removed, removed_2, ws_doctor, ws_assistant)

            refusals = [await ask(removed, frame) for frame in (
                {"type": "send_message", "group_id": group_id, "content": "Still here?", "client_msg_id": "late-1"},
                {"type": "sync", "group_id": group_id, "after_seq": 0},
                {"type": "typing", "group_id": group_id},
            )]
            await nothing(removed, removed_2, ws_doctor, ws_assistant)
            return told, doctor_own, assistant_seen, refusals

    told, doctor_own, assistant_seen, refusals = run(scenario)
    assert told == [left(quiet_group, patient, "PATIENT")] * 4
    assert assistant_seen == doctor_own["message"]
    assert [r["type"] for r in refusals] == ["error"] * 3
    assert [r["code"] for r in refusals] == ["NOT_GROUP_MEMBER"] * 3
    assert refusals[0]["client_msg_id"] == "late-1"


def test_a_member_who_leaves_over_http_stops_receiving(doctor, patient, quiet_group, client_for):
    async def scenario():
        async with connected(patient) as leaving, connected(doctor) as ws_doctor:
            response = await db(client_for(patient).delete)(
                f"/api/group/{quiet_group.group_id}/members/{patient.user_id}")
            assert response.status_code == 204, response.content
            told = [await receive(leaving), await receive(ws_doctor)]
            await db(message_send)(sender=doctor, group=quiet_group, content="Bye")
            await receive(ws_doctor)
            await nothing(leaving)
            return told

    assert run(scenario) == [left(quiet_group, patient, "PATIENT")] * 2


def test_a_removed_member_added_again_receives_again(doctor, patient, quiet_group):
    async def scenario():
        async with connected(patient) as ws_patient:
            await db(member_remove)(group=quiet_group, user=patient)
            assert (await receive(ws_patient))["type"] == "member_left"
            await db(message_send)(sender=doctor, group=quiet_group, content="missed")
            await nothing(ws_patient)
            await db(member_add)(group=quiet_group, user=patient, user_role=Role.PATIENT)
            assert (await receive(ws_patient))["type"] == "member_joined"
            await db(message_send)(sender=doctor, group=quiet_group, content="seen")
            return await receive(ws_patient)

    pushed = run(scenario)
    assert pushed["type"] == "message" and pushed["content"] == "seen" and pushed["seq"] == 2


def test_a_user_added_while_connecting_still_follows_the_group(monkeypatch, doctor, outsider, quiet_group):
    """The membership read and the subscription to membership news may not leave a gap between them."""
    read_memberships = vars(ChatConsumer)["_memberships"]
    calls = []

    async def added_right_after_the_read(self):
        groups = await read_memberships(self)
        if not calls:
            calls.append(await db(member_add)(group=quiet_group, user=outsider, user_role=Role.PATIENT))
        return groups

    monkeypatch.setattr(ChatConsumer, "_memberships", added_right_after_the_read)

    async def scenario():
        async with connected(outsider) as ws:
            told = await receive(ws)
            await db(message_send)(sender=doctor, group=quiet_group, content="Can you see this?")
            return told, await receive(ws)

    told, pushed = run(scenario)
    assert told == joined(quiet_group, outsider, "PATIENT")
    assert pushed["type"] == "message" and pushed["content"] == "Can you see this?"


def test_a_message_sent_right_after_the_join_is_not_lost(doctor, outsider, quiet_group):
    """The add commits before the connection subscribes; what is sent in between still reaches it, once."""
    def add_then_send():
        member_add(group=quiet_group, user=outsider, user_role=Role.PATIENT)
        message_send(sender=doctor, group=quiet_group, content="Right away")

    async def scenario():
        async with connected(outsider) as newcomer:
            await db(add_then_send)()
            frames = [await receive(newcomer), await receive(newcomer)]
            await db(message_send)(sender=doctor, group=quiet_group, content="Later")
            frames.append(await receive(newcomer))
            await nothing(newcomer)
            return frames

    told, right_away, later = run(scenario)
    assert told == joined(quiet_group, outsider, "PATIENT")
    assert right_away["type"] == "message" and right_away["content"] == "Right away" and right_away["seq"] == 1
    assert later["content"] == "Later" and later["seq"] == 2


def test_a_message_sent_while_connecting_is_pushed_or_counted_in_connected(monkeypatch, doctor, quiet_group):
    """A message stored between reading the memberships and subscribing is either pushed, or covered by
    `connected`'s last_seq so that the client knows to sync it."""
    read_memberships = vars(ChatConsumer)["_memberships"]
    calls = []

    async def message_right_after_the_first_read(self):
        groups = await read_memberships(self)
        if not calls:
            calls.append(await db(message_send)(sender=doctor, group=quiet_group, content="While you connected"))
        return groups

    monkeypatch.setattr(ChatConsumer, "_memberships", message_right_after_the_first_read)

    async def scenario():
        async with connected(doctor) as ws:
            pushed = None if await ws.receive_nothing(timeout=0.3) else await receive(ws)
            return ws.hello, pushed

    hello, pushed = run(scenario)
    last_seq = {g["group_id"]: g["last_seq"] for g in hello["groups"]}[quiet_group.group_id]
    assert last_seq == 1 or (pushed and pushed["seq"] == 1), (hello, pushed)
