"""One send rate per user, whatever the transport and whichever server: HTTP on one daphne process, WebSocket
on another, sharing Redis."""
import asyncio

import httpx
import pytest

from chat.models import Message
from groups.services import group_create, member_add
from tests.support.api import access_token
from tests.support.live import needs_real_services
from tests.support.wsclient import Client
from users.models import Role

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]


@pytest.fixture
def servers(start_server):
    return start_server("http", IM_SEND_RATE="3/min"), start_server("ws", IM_SEND_RATE="3/min")


async def _ws_send(client: Client, group_id: str, content: str) -> dict:
    await client.send({"type": "send_message", "group_id": group_id, "content": content, "client_msg_id": content})
    return await client.wait_for(lambda f: f.get("client_msg_id") == content and f["type"] in ("message_ack", "error"))


@pytest.mark.parametrize("first", ["http", "websocket"])
def test_sends_limited_on_one_transport_are_limited_on_the_other(servers, make_user, first):
    http_server, ws_server = servers
    doctor = make_user(Role.DOCTOR)
    group = group_create(creator=doctor, group_name="Rate", ai_enabled=False)
    headers = {"Authorization": f"Bearer {access_token(doctor)}"}

    async def scenario():
        ws = Client("doctor", doctor.user_id, access_token(doctor))
        await ws.connect(ws_server.ws_url)
        async with httpx.AsyncClient(base_url=http_server.url, headers=headers) as http:
            async def by_http(content):
                answer = await http.post("/api/message/send", json={"group_id": group.group_id, "content": content})
                return answer.status_code, answer.headers.get("Retry-After")

            used = [await by_http(f"h{i}") if first == "http" else await _ws_send(ws, group.group_id, f"w{i}")
                    for i in range(3)]
            over_ws = await _ws_send(ws, group.group_id, "ws over")
            over_http = await by_http("http over")
        await ws.close()
        return used, over_ws, over_http

    used, over_ws, over_http = asyncio.run(scenario())
    if first == "http":
        assert [status for status, _ in used] == [201, 201, 201]
    else:
        assert [frame["type"] for frame in used] == ["message_ack"] * 3
    assert over_ws["type"] == "error" and over_ws["code"] == "RATE_LIMITED"
    assert over_http[0] == 429 and int(over_http[1]) >= 1
    assert Message.objects.filter(group=group).count() == 3


def test_concurrent_sends_of_several_users_each_stop_exactly_at_their_limit(start_server, make_user):
    """The rate scripts of concurrent sends leave one server in batches: each send gets its own answer."""
    server = start_server("http", IM_SEND_RATE="3/min")
    doctor = make_user(Role.DOCTOR)
    group = group_create(creator=doctor, group_name="Burst", ai_enabled=False)
    senders = [doctor]
    for _ in range(3):
        patient = make_user(Role.PATIENT)
        member_add(group=group, user=patient, user_role=Role.PATIENT)
        senders.append(patient)

    async def scenario():
        async def burst(user):
            async with httpx.AsyncClient(base_url=server.url,
                                         headers={"Authorization": f"Bearer {access_token(user)}"}) as http:
                answers = await asyncio.gather(*[http.post("/api/message/send", json={
                    "group_id": group.group_id, "content": f"{user.username} {i}"}) for i in range(8)])
                return sorted(answer.status_code for answer in answers)

        return await asyncio.gather(*[burst(user) for user in senders])

    for statuses in asyncio.run(scenario()):
        assert statuses == [201] * 3 + [429] * 5
    for user in senders:
        assert Message.objects.filter(group=group, sender=user).count() == 3
