"""Redis failover through Sentinel: a master, a replica and three Sentinels (deploy/redis/sentinel.conf) carry the
channel layer, the Celery broker, the cache and the connection slots of two servers, a worker and beat. The master is
killed during a stream of sends and AI tasks: readiness shows the outage and the recovery, sends are stored
throughout, pushes resume on the connections clients already have, gaps are recovered with `sync`, and every patient
message gets exactly one AI reply. The worker and beat run the commands of deploy/Procfile through deploy/respawn, as
in production: kombu 5.7.0 can make a worker with a task in flight exit on a broker failover ("Unrecoverable error:
AttributeError ... 'hostname'"), and then respawn (or systemd's Restart=always) starts it again."""
import asyncio
import threading
import time
import uuid

import httpx
import pytest
import redis as redis_client
from django.conf import settings
from django.db import connection
from redis.asyncio import sentinel

from ai_bridge.models import AIInteractionRecord
from chat.models import Message, MsgType
from groups.services import group_create, member_add
from imserver.redisconn import KeptConnection
from tests.support.api import access_token
from tests.support.live import (
    Respawned,
    assert_all_received,
    assert_stored_once,
    needs_real_services,
    procfile_command,
    wait_until,
)
from tests.support.waiting import assert_stays
from tests.support.wsclient import Client
from users.models import Role

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]
FAILOVER_ABSENCE_GRACE = 3  # seconds: a task redelivered after the failover (and beat's sweep) posts by then

BEFORE, DURING, AFTER = 8, 12, 8  # patient sends before the kill, while the Sentinels fail over, after


class ReadinessLog:
    """Polls /health/ready of each server in a thread of its own: what each saw, in order."""

    def __init__(self, servers):
        self.servers, self.seen, self.stop = servers, {s.name: [] for s in servers}, threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self.stop.is_set():
            for server in self.servers:
                try:
                    r = httpx.get(f"{server.url}/health/ready", timeout=5)
                    self.seen[server.name].append((r.status_code, tuple(r.json().get("failing", []))))
                except httpx.HTTPError as exc:
                    self.seen[server.name].append((None, (type(exc).__name__,)))
            time.sleep(0.1)

    def statuses(self, name) -> list:
        return [status for status, _ in self.seen[name]]

    def recovered(self, name) -> bool:
        """The server was seen unready, and ready three times in a row since."""
        statuses = self.statuses(name)
        return 503 in statuses and statuses[statuses.index(503):][-3:] == [200, 200, 200]


def test_a_master_killed_mid_stream_fails_over_and_nothing_is_lost(
        redis_failover_set, start_ai_service, start_server, processes, make_user):
    rs = redis_failover_set
    _, ai_url = start_ai_service("--latency", "0.3", "--jitter", "0")
    env = {**rs.env(), "AI_SERVICE_URL": ai_url, "AI_SERVICE_API_KEY": "e2e-ai-key", "AI_COALESCE_SECONDS": "0",
           "AI_STALE_AFTER": "8", "AI_SWEEP_INTERVAL": "2", "HEALTH_CHECK_TIMEOUT": "1",
           "IM_SEND_RATE": "100000/min", "CELERY_RESTORE_INTERVAL": "1"}
    doctor, li, wang, assistant = (make_user(Role.DOCTOR), make_user(Role.PATIENT), make_user(Role.PATIENT),
                                   make_user(Role.AI_ASSISTANT))
    group = group_create(creator=doctor, group_name="Sentinel")
    for user, role in ((li, Role.PATIENT), (wang, Role.PATIENT), (assistant, Role.AI_ASSISTANT)):
        member_add(group=group, user=user, user_role=role)
    worker = processes(Respawned(processes.log_dir, "worker", procfile_command("worker", CELERY_CONCURRENCY=2),
                                 **env), ready_text="ready.")
    processes(Respawned(processes.log_dir, "beat", procfile_command(
        "beat", CELERY_BEAT_SCHEDULE=processes.log_dir / "beat-schedule"), **env), ready_text="beat: Starting")
    front, back = start_server("front", **env), start_server("back", **env)
    readiness = ReadinessLog([front, back])
    told: list[dict] = []

    async def scenario():
        clients = [Client("doctor@front", doctor.user_id, access_token(doctor)),
                   Client("li@back", li.user_id, access_token(li)),
                   Client("wang@front", wang.user_id, access_token(wang))]
        for client, server in zip(clients, (front, back, front)):
            await client.connect(server.ws_url)

        async def send(count: int, phase: str):
            for i in range(count):
                patient, server = (li, front) if i % 2 else (wang, back)
                async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
                    r = await http.post("/api/message/send", json={"group_id": group.group_id,
                                                                   "content": f"{phase} question {i}"},
                                        headers={"Authorization": f"Bearer {access_token(patient)}"})
                assert r.status_code == 201, (phase, i, r.status_code, r.text)
                told.append(r.json())
                await asyncio.sleep(0.25)

        await send(BEFORE, "before")
        for client in clients:
            await client.wait_for(lambda f: f["type"] == "message" and f["seq"] == told[-1]["seq"])
        old_master = rs.sentinels[0].master()
        readiness.thread.start()
        rs.master.kill()
        await send(DURING, "during")  # stored and answered while the Sentinels elect the replica
        await asyncio.get_running_loop().run_in_executor(None, lambda: wait_until(
            lambda: all(s.master() == ("127.0.0.1", rs.replica.port) for s in rs.sentinels), 30, 0.2,
            "every Sentinel naming the replica as master"))
        for server in (front, back):
            await asyncio.get_running_loop().run_in_executor(None, lambda s=server: wait_until(
                lambda: readiness.recovered(s.name), 30, 0.2, f"{s.name} unready, then ready again"))
        mark = len(told)
        await send(AFTER, "after")
        for client in clients:
            await client.wait_for(lambda f: f["type"] in ("message", "ai_reply") and f["seq"] >= told[-1]["seq"],
                                  timeout=15)
            assert not client.closed.is_set(), f"{client.name} lost its connection"
            assert len(client.connection_pushes) == 1
        # Pushes resumed on the connections the clients already had: the later sends all arrived live.
        for client in clients:
            live = {seq for _, seq in client.connection_pushes[0]}
            assert {m["seq"] for m in told[mark:]} <= live, client.name
        # The send-rate counters (the cache) and the connection slots follow the failover to the new master too.
        new_master = redis_client.Redis(port=rs.replica.port)
        assert new_master.keys("*throttle_message_send_*"), "the send-rate counters stayed with the old master"
        slots = f"{settings.CHANNEL_LAYER_PREFIX}:wsconn:{doctor.user_id}"
        held = new_master.zcard(slots)
        extra = Client("doctor@back", doctor.user_id, access_token(doctor))
        assert await extra.connect(back.ws_url) is not None
        assert new_master.zcard(slots) == held + 1, "the connection slot was not taken on the new master"
        await extra.close()
        wait_until(lambda: new_master.zcard(slots) == held, 10, 0.1, "the slot given back")
        replies = await asyncio.get_running_loop().run_in_executor(None, ai_replies_once, told)
        # Every member has every question and every AI reply: pushed live, or recovered with sync.
        await assert_all_received(clients, told + replies)
        last = max(m["seq"] for m in told + replies)
        for client in clients:
            assert sorted(client.history[group.group_id]) == list(range(1, last + 1)), client.name
            for pushes in client.connection_pushes:
                assert len(pushes) == len(set(pushes)), f"{client.name} got a push twice"
            await client.close()
        return old_master, replies

    old_master, replies = asyncio.run(scenario())
    assert old_master == ("127.0.0.1", rs.master.port)
    readiness.stop.set()
    readiness.thread.join(timeout=10)
    for name in ("front", "back"):
        seen = readiness.seen[name]
        outage = [failing for status, failing in seen if status == 503]
        assert outage, f"{name}: readiness never showed the outage: {seen[:20]}"
        assert any("channel_layer" in failing for failing in outage), outage
        first_failure = next(i for i, (status, _) in enumerate(seen) if status == 503)
        assert (200, ()) in seen[first_failure:] and seen[-1] == (200, ()), f"{name}: no recovery shown: {seen[-5:]}"
    assert_stored_once(told + replies)
    outages = {name: readiness.statuses(name).count(503) for name in ("front", "back")}
    print(f"\n{len(told)} questions, {len(replies)} AI replies; worker started again {worker.respawns()} times; "
          f"readiness answers 503: {outages}")


def ai_replies_once(told: list[dict]) -> list[dict]:
    """Wait until every question has its AI reply (lost tasks are dispatched again by beat's sweep); then check that
    none has two, and return the replies as the shared checks take them."""
    questions = [m["message_id"] for m in told]
    answered = Message.objects.filter(msg_type=MsgType.AI_REPLY, reply_to__message_id__in=questions)
    try:
        wait_until(lambda: answered.values("reply_to").distinct().count() == len(questions), 90, 0.5,
                   "an AI reply to every question")
        assert_stays(lambda: answered.count() == len(questions), grace=FAILOVER_ABSENCE_GRACE,
                     what="one AI reply per question")
        replies = list(Message.objects.filter(msg_type=MsgType.AI_REPLY).select_related("group", "reply_to"))
        assert sorted(r.reply_to.message_id for r in replies) == sorted(questions), "an AI reply was posted twice"
        assert AIInteractionRecord.objects.filter(status="SUCCESS").count() == len(questions)
        return [{"message_id": r.message_id, "group_id": r.group.group_id, "seq": r.seq, "content": r.content}
                for r in replies]
    finally:
        connection.close()  # this runs in a thread of its own: its connection would outlive the test


def test_the_connections_kept_for_hot_paths_reach_the_master_the_sentinels_name(redis_failover_set):
    """The send rate's scripts and the channel layer's publishes each keep a connection of their own
    (imserver.redisconn.KeptConnection): made from a Sentinel pool, it reaches the master the Sentinels name, not the
    pool's default address (where a plain first write would connect)."""
    rs = redis_failover_set
    pool = sentinel.SentinelConnectionPool("im", sentinel.Sentinel([("127.0.0.1", s.port) for s in rs.sentinels]))
    key = f"kept-{uuid.uuid4().hex}"

    async def scenario():
        kept = KeptConnection(pool, "test")
        try:
            return await kept.exchange([("SET", key, "on the master"), ("GET", key)], 5)
        finally:
            await kept.drop()

    assert asyncio.run(scenario()) == [b"OK", b"on the master"]
    assert redis_client.Redis(port=rs.master.port).get(key) == b"on the master"
