"""The connection cap per user holds across server processes and under concurrent handshakes, and no way of
ending a connection leaks a slot: two daphne processes sharing Redis."""
import asyncio

import httpx
import pytest
from rest_framework_simplejwt.tokens import AccessToken

from tests.support.live import needs_real_services
from tests.support.teams import care_team
from tests.support.wsclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]

CAP = 5


@pytest.fixture
def servers(start_server):
    env = {"WS_MAX_CONNECTIONS_PER_USER": CAP, "IM_SEND_RATE": "100000/min", "WS_RATE_MESSAGES": 100000}
    return start_server("a", **env), start_server("b", **env)


@pytest.fixture
def team(make_user):
    doctor, (patient,), group = care_team(make_user, 1)
    return doctor, patient, group


async def _open_many(user, servers, count: int) -> tuple[list[Client], list[int | None]]:
    """`count` handshakes at once, alternating servers: (the accepted clients, the refusals' close codes)."""
    token = str(AccessToken.for_user(user))
    clients = [Client(f"c{i}", user.user_id, token) for i in range(count)]
    hellos = await asyncio.gather(*(c.connect(servers[i % 2].ws_url) for i, c in enumerate(clients)))
    accepted = [c for c, hello in zip(clients, hellos) if hello is not None]
    refused = [await c.wait_closed() for c, hello in zip(clients, hellos) if hello is None]
    return accepted, refused


async def _close_all(clients):
    await asyncio.gather(*(c.close() for c in clients))


def test_sixty_concurrent_handshakes_open_at_most_the_cap_across_two_servers(servers, team):
    _, patient, _ = team

    async def scenario():
        accepted, refused = await _open_many(patient, servers, 60)
        await _close_all(accepted)
        await asyncio.sleep(0.5)
        again, _ = await _open_many(patient, servers, CAP)  # closing gave every slot back
        await _close_all(again)
        return len(accepted), refused, len(again)

    accepted, refused, again = asyncio.run(scenario())
    assert accepted == CAP
    assert refused == [4429] * (60 - CAP)
    assert again == CAP


def test_no_slot_leaks_after_a_nested_frame_attack_and_abrupt_closes_under_push_load(servers, team):
    doctor, patient, group = team
    a, b = servers

    async def flood(stop: asyncio.Event):
        async with httpx.AsyncClient() as http:
            n = 0
            while not stop.is_set():
                n += 1
                await http.post(f"{a.url}/api/message/send", json={"group_id": group.group_id, "content": f"m{n}"},
                                headers={"Authorization": f"Bearer {AccessToken.for_user(doctor)}"})

    async def scenario():
        # A frame nested 5,000 deep gets an error frame; the connection stays and answers.
        attacker, _ = await _open_many(patient, servers, 1)
        await attacker[0].ws.send("[" * 5000 + "]" * 5000)
        error = await attacker[0].wait_for(lambda f: f["type"] == "error")
        await attacker[0].send({"type": "ping"})
        await attacker[0].wait_for(lambda f: f["type"] == "pong")
        await _close_all(attacker)
        # Connections dropped without a closing handshake while pushes are queued for them, five rounds.
        stop = asyncio.Event()
        flooding = asyncio.create_task(flood(stop))
        for _ in range(5):
            clients, _ = await _open_many(patient, servers, CAP)
            await asyncio.sleep(0.2)
            for c in clients:
                c.ws.transport.abort()
            await asyncio.sleep(0.1)
        stop.set()
        await flooding
        await asyncio.sleep(1)
        accepted, refused = await _open_many(patient, servers, CAP + 1)
        await _close_all(accepted)
        return error, len(accepted), refused

    error, accepted, refused = asyncio.run(scenario())
    assert error["code"] == "VALIDATION_ERROR" and "nest" in error["message"]
    assert accepted == CAP and refused == [4429]


def test_a_server_that_dies_gives_its_slots_back_after_the_slot_ttl(start_server, team):
    _, patient, _ = team
    env = {"WS_MAX_CONNECTIONS_PER_USER": CAP, "WS_CONNECTION_SLOT_TTL": 2}
    doomed, survivor = start_server("doomed", **env), start_server("survivor", **env)

    async def scenario():
        held, _ = await _open_many(patient, [doomed, doomed], CAP)
        doomed.kill()  # no disconnect ever runs there
        await asyncio.gather(*(c.wait_closed() for c in held))
        refused_at_once = (await _open_many(patient, [survivor, survivor], 1))[1]
        await asyncio.sleep(2.5)
        later, _ = await _open_many(patient, [survivor, survivor], CAP)
        await _close_all(later)
        return refused_at_once, len(later)

    refused_at_once, later = asyncio.run(scenario())
    assert refused_at_once == [4429]
    assert later == CAP

