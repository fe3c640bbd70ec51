"""Redis (channel layer and broker) killed and restarted mid-stream: sends stay 201, pushes resume, sync fills gaps."""
import asyncio

import httpx
import pytest

from groups.services import group_create, member_add
from tests.support.api import access_token
from tests.support.live import assert_all_received, assert_stored_once, needs_real_services
from tests.support.waiting import ABSENCE_GRACE, assert_nothing_arrives
from tests.support.wsclient import Client
from users.models import Role

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]

BEFORE, DURING, AFTER = 15, 15, 20  # sends before the kill, while Redis is down, after it is back


def _client(name, user):
    return Client(name, user.user_id, access_token(user))


async def _ready(http: httpx.AsyncClient, server) -> httpx.Response:
    return await http.get(f"{server.url}/health/ready", timeout=15)


async def _wait_ready(http, server, status: int, timeout: float = 20) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await _ready(http, server)
        if response.status_code == status:
            return response.json()
        assert asyncio.get_running_loop().time() < deadline, f"/health/ready stayed {response.status_code}"
        await asyncio.sleep(0.2)


def test_sends_survive_a_redis_restart_and_pushes_resume(start_redis, start_server, make_user):
    doctor, li, wang = make_user(Role.DOCTOR), make_user(Role.PATIENT), make_user(Role.PATIENT)
    group = group_create(creator=doctor, group_name="Redis restart")
    member_add(group=group, user=li, user_role=Role.PATIENT)
    member_add(group=group, user=wang, user_role=Role.PATIENT)
    redis = start_redis()
    env = {"REDIS_URL": redis.url, "CELERY_BROKER_URL": redis.url, "HEALTH_CHECK_TIMEOUT": "1",
           "IM_SEND_RATE": "10000/min"}
    front, back = start_server("front", **env), start_server("back", **env)
    headers = {"Authorization": f"Bearer {access_token(doctor)}"}
    told: list[dict] = []

    async def scenario():
        watcher, li_ws, wang_ws = _client("doctor@front", doctor), _client("li@back", li), _client("wang@back", wang)
        await watcher.connect(front.ws_url)
        await li_ws.connect(back.ws_url)
        await wang_ws.connect(back.ws_url)
        clients = [watcher, li_ws, wang_ws]
        async with httpx.AsyncClient(base_url=front.url, headers=headers, timeout=10) as http:

            async def send(count: int, phase: str):
                for i in range(count):
                    r = await http.post("/api/message/send",
                                        json={"group_id": group.group_id, "content": f"{phase} {i}"})
                    assert r.status_code == 201, (phase, i, r.status_code, r.text)
                    told.append(r.json())
                    await asyncio.sleep(0.02)

            assert (await _ready(http, front)).status_code == 200
            await send(BEFORE, "before")
            for client in clients:
                await client.wait_for(lambda f: f["type"] == "message" and f["seq"] == BEFORE)

            redis.kill()
            await send(DURING, "during")  # stored and answered; their pushes are lost, not the messages
            for server in (front, back):
                body = await _wait_ready(http, server, 503)
                assert body["checks"]["channel_layer"].startswith("failed"), body
                assert body["checks"]["task_broker"].startswith("failed"), body
                assert set(body["failing"]) == {"channel_layer", "task_broker"}, body
                assert body["checks"]["database"] == "ok", body

            redis.restart()
            for server in (front, back):
                body = await _wait_ready(http, server, 200)
                assert body["checks"] == {"database": "ok", "channel_layer": "ok", "task_broker": "ok"}, body
            # Pushes resume on the connections the clients already have, on both servers.
            mark = len(told)
            await send(AFTER, "after")
            last = told[-1]["seq"]
            for client in clients:
                await client.wait_for(lambda f: f["type"] == "message" and f["seq"] == last, timeout=10)
                assert not client.closed.is_set(), f"{client.name} lost its connection"
                assert len(client.connection_pushes) == 1
            # After the last seq, any message frame is a push twice.
            await assert_nothing_arrives(*clients, match=lambda f: f["type"] == "message", grace=ABSENCE_GRACE)

        for client in clients:
            pushes = client.connection_pushes[0]
            assert len(pushes) == len(set(pushes)), f"{client.name} got a push twice"
            assert [seq for _, seq in pushes][:BEFORE] == list(range(1, BEFORE + 1)), client.name
            # Pushes come back within a moment of Redis returning: the last half of the later sends all arrive live.
            live_after = {seq for _, seq in pushes if seq > told[mark - 1]["seq"]}
            assert {m["seq"] for m in told[-AFTER // 2:]} <= live_after, client.name
        await assert_all_received(clients, told)
        for client in clients:
            assert sorted(client.history[group.group_id]) == list(range(1, len(told) + 1)), client.name
            await client.close()

    asyncio.run(scenario())
    assert len(told) == BEFORE + DURING + AFTER
    assert_stored_once(told)
