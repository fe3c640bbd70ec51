"""deploy/nginx/imserver.conf in front of two servers run as deploy/Procfile runs them: HTTP, WebSocket, static files,
the body limit and the proxy headers go through it, and when one server is killed with kill -9 mid-stream its
clients reconnect through nginx to the other and end with every message exactly once."""
import asyncio
import json
import re

import httpx
import pytest

from tests.support.api import access_token
from tests.support.live import assert_all_received, assert_stored_once, needs_real_services
from tests.support.teams import UNTHROTTLED_ENV, care_team, send_until_stored
from tests.support.wsclient import Client, stay_connected

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]

IM_MAX_REQUEST_BYTES = 262144


def test_http_websocket_static_files_and_limits_through_nginx(start_production_server, start_nginx, make_user):
    doctor, (li,), group = care_team(make_user, 1)
    a, b = start_production_server("a", **UNTHROTTLED_ENV), start_production_server("b", **UNTHROTTLED_ENV)
    nginx = start_nginx([a, b])
    headers = {"Authorization": f"Bearer {access_token(doctor)}"}

    with httpx.Client(base_url=nginx.url, timeout=10) as http:
        ready = http.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "ok", ready.text
        # The client's request id reaches the server and comes back; a forged client address does not get in.
        sent = http.post("/api/message/send", json={"group_id": group.group_id, "content": "through nginx"},
                         headers={**headers, "X-Request-ID": "via-nginx-1", "X-Forwarded-For": "203.0.113.9"})
        assert sent.status_code == 201, sent.text
        assert sent.headers["X-Request-ID"] == "via-nginx-1"
        told = [sent.json()]
        # Without one, nginx makes one up ($request_id) and the server uses it.
        me = http.get("/api/user/me", headers=headers)
        assert me.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", me.headers["X-Request-ID"]), me.headers
        # The body limit is IM_MAX_REQUEST_BYTES, answered by nginx in the contract's shape; the servers never see it.
        big = http.post("/api/message/send", content=b'{"content": "' + b"x" * (IM_MAX_REQUEST_BYTES + 1) + b'"}',
                        headers={**headers, "Content-Type": "application/json"})
        assert big.status_code == 413 and big.json()["error"]["code"] == "PAYLOAD_TOO_LARGE", big.text
        # Static files come from STATIC_ROOT, straight from nginx.
        script = http.get("/static/chat/app.js")
        assert script.status_code == 200 and script.content == (nginx.static_root / "chat/app.js").read_bytes()
        assert script.headers["Cache-Control"] == "max-age=604800"  # expires 7d

    async def websockets():
        watcher, patient = Client("doctor", doctor.user_id, access_token(doctor)), Client("li", li.user_id,
                                                                                            access_token(li))
        for client in (watcher, patient):
            hello = await client.connect(nginx.ws_url)
            assert hello["groups"][0]["group_id"] == group.group_id
        await patient.send({"type": "send_message", "group_id": group.group_id, "content": "over ws via nginx",
                            "client_msg_id": "li-nginx-1"})
        ack = await patient.wait_for(lambda f: f["type"] == "message_ack")
        told.append(ack["message"])
        await watcher.wait_for(lambda f: f["type"] == "message" and f["seq"] == ack["message"]["seq"])
        await assert_all_received([watcher, patient], told)
        for client in (watcher, patient):
            await client.close()

    asyncio.run(websockets())
    assert_stored_once(told)
    logs = a.output() + b.output()
    access = [json.loads(line) for line in logs.splitlines() if '"imserver.access"' in line]
    sends = [line for line in access if line.get("path") == "/api/message/send"]
    assert sends and all(line["client"].startswith("127.0.0.1:") for line in sends), sends
    assert "203.0.113.9" not in logs
    assert not any(line.get("path", "").startswith("/static/") for line in access)
    assert all(line.get("status") != 413 for line in access)
    # Both servers took WebSocket connections or requests: nginx balanced over them.
    assert '"imserver.access"' in a.output() and '"imserver.access"' in b.output()


def test_all_servers_down_answers_503_in_the_contract_shape(start_production_server, start_nginx):
    server = start_production_server("only", **UNTHROTTLED_ENV)
    nginx = start_nginx([server])
    server.kill()
    response = httpx.get(f"{nginx.url}/api/user/me", timeout=10)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert response.headers["Retry-After"] == "1"


TOTAL = 80


def test_kill_9_one_server_behind_nginx_clients_reconnect_and_get_every_message_once(
        start_production_server, start_nginx, make_user):
    doctor, patients, group = care_team(make_user, 4)
    doomed = start_production_server("doomed", **UNTHROTTLED_ENV)
    survivor = start_production_server("survivor", **UNTHROTTLED_ENV)
    nginx = start_nginx([doomed, survivor])
    token = access_token(doctor)
    told: list[dict] = []

    async def scenario():
        clients = [Client(f"p{i}", p.user_id, access_token(p)) for i, p in enumerate(patients)]
        clients.append(Client("doctor", doctor.user_id, token))
        for client in clients:
            await client.connect(nginx.ws_url)  # nginx alternates: about half land on each server
        stop = asyncio.Event()
        keepers = [asyncio.create_task(stay_connected(c, nginx.ws_url, [group.group_id], stop)) for c in clients]
        attempts = []

        async def stream():
            async with httpx.AsyncClient(base_url=nginx.url, timeout=10) as http:
                for i in range(TOTAL):
                    message, tries = await send_until_stored(http, token, group.group_id, f"m{i}")
                    told.append(message)
                    attempts.append(tries)
                    await asyncio.sleep(0.02)

        sender = asyncio.create_task(stream())
        while len(told) < TOTAL // 3:
            await asyncio.sleep(0.01)
        doomed.kill()
        await sender
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*keepers)
        cut = [c for c in clients if getattr(c, "close_codes", [])]
        assert cut, "no client was on the killed server"
        assert len(cut) < len(clients), "no client was on the surviving server"
        for client in clients:
            assert len(client.connection_pushes) == 1 + len(client.close_codes)
            for pushes in client.connection_pushes:
                assert len(pushes) == len(set(pushes)), f"{client.name} got a push twice on one connection"
        await assert_all_received(clients, told)
        for client in clients:
            assert sorted(client.history[group.group_id]) == list(range(1, TOTAL + 1)), client.name
            await client.close()
        print(f"\n{len(cut)} of {len(clients)} clients reconnected; sends retried: {sum(t > 1 for t in attempts)}")

    asyncio.run(scenario())
    assert sorted(m["seq"] for m in told) == list(range(1, TOTAL + 1))
    # nginx logged the WebSockets that broke, but never their access tokens (they travel in the query string).
    assert "/ws/" in nginx.log_text() and "token=" not in nginx.log_text() and "eyJ" not in nginx.log_text()
    assert_stored_once(told)
