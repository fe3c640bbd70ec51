"""The server's access log: one JSON line per HTTP request and WebSocket event, like every other log line, with
paths cut before the query string, so that no token reaches the log."""
import asyncio
import json

import httpx
import pytest

from tests.support.live import ENGINES, needs_shared_database
from tests.support.wsclient import Client
from users.models import Role
from users.services import user_tokens

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_shared_database()]


@pytest.mark.parametrize("engine", ENGINES)
def test_access_lines_are_json_without_tokens(start_server, make_user, engine):
    patient = make_user(Role.PATIENT)
    token = user_tokens(user=patient)["access"]
    server = start_server("server", engine)

    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            assert (await http.get("/health", params={"token": token})).status_code == 200
            me = await http.get("/api/user/me", params={"token": token}, headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200
        client = Client("patient", patient.user_id, token)  # the token rides in the WebSocket's query string
        await client.connect(server.ws_url)
        await client.close()

    asyncio.run(scenario())
    server.stop()  # SIGTERM; every line is written once the process is gone
    lines = [json.loads(line) for line in server.output().splitlines() if line.strip()]  # every line is JSON
    access = [line for line in lines if line["logger"] == "imserver.access"]
    http_lines = {line["path"]: line for line in access if line["method"] != "WEBSOCKET"}
    assert http_lines["/health"]["status"] == 200 and http_lines["/api/user/me"]["status"] == 200, access
    for line in http_lines.values():
        assert line["method"] == "GET" and line["duration_ms"] >= 0 and line["client"].startswith("127.0.0.1:")
    events = [line["event"] for line in access if line["method"] == "WEBSOCKET"]
    assert events == ["connecting", "connected", "disconnected"], access
    assert {line["path"] for line in access if line["method"] == "WEBSOCKET"} == {f"/ws/{patient.user_id}"}
    assert "token=" not in server.output() and token not in server.output()
