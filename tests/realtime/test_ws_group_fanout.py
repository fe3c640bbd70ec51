"""A process follows each group once, however many of its connections follow it, and hands each push to all of
them in one pass (chat.fanout): a connection busy with its own send still gets its groups' pushes at once, one
connection's failure is its own, and nothing of a group stays followed once its last connection has gone."""
import asyncio
import contextlib
import logging

import psycopg
import pytest
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import connection

from chat.fanout import GroupFanout, fanout_for
from chat.models import Message
from chat.services import message_send
from groups.models import ChatGroup
from groups.services import group_create, member_add
from tests.support.teams import care_team
from tests.support.waiting import wait_for_async
from tests.support.ws import connected, db, nothing, receive, receive_many, run
from users.models import Role

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_channel_layer")]


def test_every_connection_of_a_process_gets_the_push_and_the_group_is_let_go_after_the_last(make_user):
    doctor, patients, group = care_team(make_user, patients=9)

    async def scenario():
        async with contextlib.AsyncExitStack() as stack:
            conns = [await stack.enter_async_context(connected(user)) for user in (doctor, *patients)]
            fanout = fanout_for(get_channel_layer())
            followers = len(fanout.followers[group.group_id])
            await db(message_send)(sender=doctor, group=group, content="Rounds at nine")
            pushed = [await receive(ws) for ws in conns]
            await nothing(*conns)
        return followers, pushed, fanout

    followers, pushed, fanout = run(scenario)
    assert followers == 10
    assert [(p["type"], p["content"]) for p in pushed] == [("message", "Rounds at nine")] * 10
    assert len({p["message_id"] for p in pushed}) == 1
    assert (fanout.followers, fanout.subscribed, fanout.receiver) == ({}, set(), None)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="holds one group's row lock while another is free")
def test_a_connection_whose_send_waits_still_gets_its_other_groups_pushes(doctor, patient):
    held_up = group_create(creator=doctor, group_name="Ward 1", ai_enabled=False)
    other = group_create(creator=doctor, group_name="Ward 2", ai_enabled=False)
    for group in (held_up, other):
        member_add(group=group, user=patient, user_role=Role.PATIENT)
    conf = connection.settings_dict

    async def scenario():
        async with connected(patient) as ws:
            # Another transaction holds the first group's row: the patient's send there waits for it.
            locker = await psycopg.AsyncConnection.connect(
                host=conf["HOST"] or "127.0.0.1", port=conf["PORT"] or 5432, user=conf["USER"],
                dbname=conf["NAME"], password=conf["PASSWORD"] or None)
            try:
                await locker.execute(f"SELECT 1 FROM {ChatGroup._meta.db_table} WHERE group_id = %s FOR UPDATE",
                                     [held_up.group_id])
                await ws.send_json_to({"type": "send_message", "group_id": held_up.group_id,
                                       "content": "waits", "client_msg_id": "w-1"})
                await wait_for_async(lambda: lock_waited(locker))  # the send has reached the lock
                await db(message_send)(sender=doctor, group=other, content="meanwhile")
                during = await receive(ws)  # within TIMEOUT, while the send still waits
                stored_during = await db(Message.objects.filter(group=held_up).count)()
            finally:
                await locker.rollback()
                await locker.close()
            after = await receive_many(ws, 2)
            return during, stored_during, after

    during, stored_during, after = run(scenario)
    assert (during["type"], during["group_id"], during["content"]) == ("message", other.group_id, "meanwhile")
    assert stored_during == 0
    assert after["message_ack"]["client_msg_id"] == "w-1"
    assert after["message"]["content"] == "waits" and after["message"]["group_id"] == held_up.group_id


async def lock_waited(locker) -> bool:
    """Some statement waits for a lock that `locker`'s transaction holds."""
    cursor = await locker.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
    return (await cursor.fetchone())[0] > 0


class Follower:
    def __init__(self, fails=False):
        self.events, self.fails = [], fails

    async def fanout_event(self, event):
        if self.fails:
            raise RuntimeError("this connection's handler broke")
        self.events.append(event)


def test_one_followers_failure_does_not_keep_the_push_from_the_others(caplog):
    async def scenario():
        fanout = GroupFanout(InMemoryChannelLayer())
        first, broken, last = Follower(), Follower(fails=True), Follower()
        for follower in (first, broken, last):
            await fanout.follow("g1", follower)
        with caplog.at_level(logging.ERROR, logger="chat.fanout"):
            await fanout.layer.group_send("grp.g1", {"type": "chat.message", "group_id": "g1", "seq": 1})
            await wait_for_async(lambda: last.events and first.events)
        for follower in (first, broken, last):
            await fanout.unfollow("g1", follower)
        return first.events, last.events, fanout

    first, last, fanout = run(scenario)
    assert first == last == [{"type": "chat.message", "group_id": "g1", "seq": 1}]
    assert "push chat.message not handed to a connection" in caplog.text
    assert fanout.receiver is None and fanout.subscribed == set()


def test_a_group_followed_again_while_it_is_let_go_stays_followed():
    async def scenario():
        layer = InMemoryChannelLayer()
        fanout = GroupFanout(layer)
        leaving, coming = Follower(), Follower()
        await fanout.follow("g1", leaving)
        # The last follower leaves, and another comes while the process's membership is being given up.
        await asyncio.gather(fanout.unfollow("g1", leaving), fanout.follow("g1", coming))
        await layer.group_send("grp.g1", {"type": "chat.message", "group_id": "g1", "seq": 1})
        await wait_for_async(lambda: coming.events)
        subscribed = set(fanout.subscribed)
        await fanout.unfollow("g1", coming)
        return leaving.events, coming.events, subscribed

    leaving, coming, subscribed = run(scenario)
    assert subscribed == {"g1"}
    assert coming == [{"type": "chat.message", "group_id": "g1", "seq": 1}] and leaving == []


class LayerFailingOnce(InMemoryChannelLayer):
    """The in-memory layer, whose first receive fails as a Redis layer's does while Redis is away."""

    failed = False

    async def receive(self, channel):
        if not self.failed:
            self.failed = True
            raise ConnectionError("Redis is away")
        return await super().receive(channel)


def test_a_failing_receive_does_not_end_the_processs_pushes(caplog, settings):
    settings.WS_FANOUT_RECEIVE_RETRY = 0.01

    async def scenario():
        fanout = GroupFanout(LayerFailingOnce())
        follower = Follower()
        await fanout.follow("g1", follower)
        with caplog.at_level(logging.ERROR, logger="chat.fanout"):
            await fanout.layer.group_send("grp.g1", {"type": "chat.message", "group_id": "g1", "seq": 1})
            await wait_for_async(lambda: follower.events)
        await fanout.unfollow("g1", follower)
        return follower.events

    assert run(scenario) == [{"type": "chat.message", "group_id": "g1", "seq": 1}]
    assert "group pushes not received" in caplog.text


class LayerFailingToDiscard(InMemoryChannelLayer):
    """The in-memory layer, whose group_discard fails as a Redis layer's does while Redis is away."""

    async def group_discard(self, group, channel):
        raise ConnectionError("Redis is away")


def test_a_connection_that_goes_while_the_layer_fails_is_let_go_of_every_group(caplog):
    async def scenario():
        fanout = GroupFanout(LayerFailingToDiscard())
        follower = Follower()
        for group_id in ("g1", "g2"):
            await fanout.follow(group_id, follower)
        with caplog.at_level(logging.WARNING, logger="chat.fanout"):
            for group_id in ("g1", "g2"):
                await fanout.unfollow(group_id, follower)
        return fanout

    fanout = run(scenario)
    assert (fanout.followers, fanout.subscribed, fanout.receiver) == ({}, set(), None)
    assert "group g1 not let go in the channel layer" in caplog.text
