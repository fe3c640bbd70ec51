"""Each connection gets a group's messages in seq order, each once, even when the pushes reach its server
out of order or not at all (commits of concurrent senders on several servers publish in any order)."""
import asyncio
from unittest import mock

import pytest
from django.conf import settings

from chat import realtime
from chat.consumers import ChatConsumer
from chat.services import message_send
from tests.support.api import access_token
from tests.support.ws import TIMEOUT, ask, communicator, connected, db, handshake, nothing, receive, run

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


def test_gaps_closed_by_their_pushes_in_time_are_not_read_from_the_database(
        doctor, patient, quiet_group, settings, monkeypatch):
    """Under load some push of a busy group is nearly always held: only a gap open for WS_PUSH_REORDER_WAIT is
    read, not whatever happens to be held when the first gap's wait ends."""
    settings.WS_PUSH_REORDER_WAIT = 3.0
    reads = []
    since = ChatConsumer._since

    async def counted(self, group_id, after_seq):
        reads.append(after_seq)
        return await since(self, group_id, after_seq)

    monkeypatch.setattr(ChatConsumer, "_since", counted)

    async def scenario():
        async with connected(patient) as ws:
            one, two, three, four = await db(store_unpushed)(quiet_group, doctor, "1", "2", "3", "4")
            await push(two)  # held: 1 is missing
            await asyncio.sleep(1.5)
            await push(one)  # that gap closes
            await push(four)  # a new one opens: 3 is missing, and is still missing when 2's wait would end
            await asyncio.sleep(2.0)  # past 2's wait (3 s after it came), within 4's
            await push(three)
            frames = [await receive(ws) for _ in range(4)]
            await nothing(ws)
            return frames

    frames = run(scenario)
    assert [f["seq"] for f in frames] == [1, 2, 3, 4]
    assert reads == []


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


def pushes_during_handshake(messages):
    """Messages stored and pushed after the handshake read the groups' last_seq and before the `connected` frame
    left: the window in which a connection holds what its fan-out hands it."""
    read_groups = ChatConsumer.__dict__["_connected_groups"]

    async def connected_groups(consumer):
        groups = await read_groups(consumer)
        stored = await db(store_unpushed)(*messages)
        for message in stored:
            await push(message)
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while (len(consumer.early) < len(stored) and consumer.early_bytes <= settings.WS_MAX_QUEUED_BYTES
               and asyncio.get_running_loop().time() < deadline):
            await asyncio.sleep(0.01)
        return groups

    return mock.patch.object(ChatConsumer, "_connected_groups", connected_groups)


def test_pushes_during_the_handshake_follow_the_connected_frame_in_order(doctor, patient, quiet_group):
    async def scenario():
        with pushes_during_handshake((quiet_group, doctor, "one", "two", "three")):
            async with connected(patient) as ws:
                frames = [await receive(ws) for _ in range(3)]
                await nothing(ws)
                return ws.hello, frames

    hello, frames = run(scenario)
    assert hello["groups"][0]["last_seq"] == 0
    assert [(f["type"], f["seq"], f["content"]) for f in frames] == [
        ("message", 1, "one"), ("message", 2, "two"), ("message", 3, "three")]


def test_pushes_held_past_the_backlog_bound_close_the_new_connection_with_4008(doctor, patient, quiet_group,
                                                                               settings):
    """What a connection holds during its handshake is bounded as a slow reader's backlog is: past
    WS_MAX_QUEUED_BYTES it is closed with 4008 right after `connected`, and the client's sync has every message."""
    settings.WS_MAX_QUEUED_BYTES = 400  # about one message frame

    async def scenario():
        with pushes_during_handshake((quiet_group, doctor, *(f"burst {i}" for i in range(5)))):
            comm = communicator(patient.user_id, token=access_token(patient))
            accepted, _ = await handshake(comm)
            assert accepted
            hello = await receive(comm)
            closed = await comm.receive_output(timeout=TIMEOUT)
        async with connected(patient) as ws:
            synced = await ask(ws, {"type": "sync", "group_id": quiet_group.group_id, "after_seq": 0})
        return hello, closed, synced

    hello, closed, synced = run(scenario)
    assert hello["type"] == "connected"
    assert closed == {"type": "websocket.close", "code": 4008}
    assert [m["content"] for m in synced["messages"]] == [f"burst {i}" for i in range(5)]
