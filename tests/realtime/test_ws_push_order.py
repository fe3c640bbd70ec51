"""Each connection gets a group's messages in seq order, each once, even when the pushes reach its server
out of order or not at all (commits of concurrent senders on several servers publish in any order)."""
from unittest import mock

import pytest

from chat import realtime
from chat.services import message_send
from tests.support.ws import connected, db, nothing, receive, run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_channel_layer")]


def store_unpushed(group, sender, *contents):
    """Messages stored while their pushes are lost (as when a commit's publish never reaches Redis)."""
    with mock.patch.object(realtime, "message_push"):
        return [message_send(sender=sender, group=group, content=c)[0] for c in contents]


async def push(message):
    """The push the write path makes after commit, replayed at the moment the test chooses."""
    await db(realtime.message_push)(message)


def test_pushes_that_arrive_out_of_order_are_delivered_in_seq_order(doctor, patient, quiet_group, settings):
    settings.WS_PUSH_REORDER_WAIT = 5.0  # longer than the test: the order comes from the pushes alone

    async def scenario():
        async with connected(patient) as ws:
            first, second, third = await db(store_unpushed)(quiet_group, doctor, "one", "two", "three")
            await push(third)
            await push(first)
            await push(second)
            frames = [await receive(ws) for _ in range(3)]
            await nothing(ws)
            return frames

    frames = run(scenario)
    assert [(f["seq"], f["content"]) for f in frames] == [(1, "one"), (2, "two"), (3, "three")]


def test_a_push_that_never_comes_is_read_from_the_database_after_a_short_wait(
        doctor, patient, quiet_group, settings):
    settings.WS_PUSH_REORDER_WAIT = 0.1

    async def scenario():
        async with connected(patient) as ws:
            stored = await db(store_unpushed)(quiet_group, doctor, "lost 1", "lost 2", "arrives")
            await push(stored[-1])
            frames = [await receive(ws) for _ in range(3)]
            await nothing(ws)
            return frames

    frames = run(scenario)
    assert [(f["type"], f["seq"], f["content"]) for f in frames] == [
        ("message", 1, "lost 1"), ("message", 2, "lost 2"), ("message", 3, "arrives")]


def test_a_repeated_push_is_delivered_once(doctor, patient, quiet_group):
    async def scenario():
        async with connected(patient) as ws:
            message, _ = await db(message_send)(sender=doctor, group=quiet_group, content="Once only")
            pushed = await receive(ws)
            await push(message)
            await nothing(ws)
            return pushed

    assert run(scenario)["content"] == "Once only"


def test_messages_stored_before_the_connection_are_left_to_sync_not_pushed(doctor, patient, quiet_group):
    """The `connected` frame's last_seq splits the work: up to it the client syncs, after it the server pushes."""
    early = store_unpushed(quiet_group, doctor, "before")[0]

    async def scenario():
        async with connected(patient) as ws:
            await push(early)  # a late publish of a message the client already knows it must sync
            later, _ = await db(message_send)(sender=doctor, group=quiet_group, content="after")
            frame = await receive(ws)
            await nothing(ws)
            return ws.hello, frame

    hello, frame = run(scenario)
    assert hello["groups"] == [{"group_id": quiet_group.group_id, "last_seq": 1, "last_read_seq": 0, "unread_count": 1}]
    assert (frame["seq"], frame["content"]) == (2, "after")
