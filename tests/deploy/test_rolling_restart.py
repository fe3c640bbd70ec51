"""A rolling restart behind nginx under a stream of sends: each server in turn gets SIGTERM, drains and exits within
WS_SHUTDOWN_GRACE + WS_SHUTDOWN_EXIT_MARGIN, and is started again before the next one stops. Its clients see 1012
(never 1006), reconnect through nginx and sync; every message is stored once and reaches every member."""
import asyncio
import signal
import time

import httpx
import pytest
from django.conf import settings

from tests.support.api import access_token
from tests.support.live import ENGINES, assert_all_received, assert_stored_once, needs_real_services
from tests.support.teams import UNTHROTTLED_ENV, care_team, send_until_stored
from tests.support.wsclient import Client, stay_connected

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]

GRACE = 3
SENDERS = 6
MACHINE_SLACK = 1.0  # seconds for the shared machine to reap a process it was told has exited


@pytest.mark.parametrize("engine", ENGINES)
def test_restarting_every_server_in_turn_loses_and_doubles_nothing(start_production_server, start_nginx, make_user,
                                                                   engine):
    doctor, patients, group = care_team(make_user, 5)
    env = {**UNTHROTTLED_ENV, "WS_SHUTDOWN_GRACE": GRACE}
    servers = [start_production_server(name, engine, **env) for name in ("a", "b")]
    nginx = start_nginx(servers)
    senders = [doctor, *patients[:SENDERS - 1]]
    told: list[dict] = []
    exits: list[float] = []

    async def scenario():
        clients = [Client(u.username, u.user_id, access_token(u)) for u in (doctor, *patients)]
        for client in clients:
            await client.connect(nginx.ws_url)
        stop, streaming = asyncio.Event(), asyncio.Event()
        keepers = [asyncio.create_task(stay_connected(c, nginx.ws_url, [group.group_id], stop)) for c in clients]
        streaming.set()
        retried = []

        async def stream(user):
            token = access_token(user)
            async with httpx.AsyncClient(base_url=nginx.url, timeout=15) as http:
                i = 0
                while streaming.is_set():
                    message, tries = await send_until_stored(http, token, group.group_id, f"{user.username} {i}")
                    told.append(message)
                    retried.append(tries > 1)
                    i += 1
                    await asyncio.sleep(0.01)

        streams = [asyncio.create_task(stream(user)) for user in senders]
        loop = asyncio.get_running_loop()
        for server in servers:
            await asyncio.sleep(1.5)  # sends flow through both servers
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            await loop.run_in_executor(None, server.proc.wait, GRACE + settings.WS_SHUTDOWN_EXIT_MARGIN + 30)
            exits.append(time.monotonic() - started)
            assert server.proc.returncode == 0, server.output()[-3000:]
            server.log.close()
            await loop.run_in_executor(None, server.restart)
        await asyncio.sleep(1.5)
        streaming.clear()
        await asyncio.gather(*streams)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*keepers)

        codes = [code for client in clients for code in client.close_codes]
        assert codes and set(codes) == {1012}, f"close codes seen: {codes}"
        assert all(len(client.close_codes) >= 1 for client in clients), "a client was on no restarted server"
        for client in clients:
            for pushes in client.connection_pushes:
                assert len(pushes) == len(set(pushes)), f"{client.name} got a push twice on one connection"
        await assert_all_received(clients, told)
        last = max(m["seq"] for m in told)
        for client in clients:
            assert sorted(client.history[group.group_id]) == list(range(1, last + 1)), client.name
            await client.close()
        print(f"\n{len(told)} messages, {sum(retried)} sends retried, close codes {codes}, "
              f"exits after SIGTERM {[round(e, 2) for e in exits]} s")

    asyncio.run(scenario())
    bound = GRACE + settings.WS_SHUTDOWN_EXIT_MARGIN + MACHINE_SLACK
    assert len(exits) == 2 and all(e <= bound for e in exits), exits
    drained = [line for s in servers for line in s.output().splitlines() if "Shutting down: stopped listening" in line]
    assert len(drained) == 2, drained
    assert sorted(m["seq"] for m in told) == list(range(1, len(told) + 1))
    assert "token=" not in nginx.log_text() and "eyJ" not in nginx.log_text()
    assert_stored_once(told)
