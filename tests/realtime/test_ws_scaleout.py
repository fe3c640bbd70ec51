"""Two daphne processes sharing Redis: every member on either gets every message once, in seq order."""
import asyncio

import httpx
import pytest

from groups.services import group_create, member_add
from tests.support.api import access_token
from tests.support.live import needs_real_services
from tests.support.waiting import ABSENCE_GRACE, assert_nothing_arrives
from tests.support.wsclient import Client
from users.models import Role

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]


def _client(name, user):
    return Client(name, user.user_id, access_token(user))


def test_messages_reach_every_member_on_both_servers(start_server, make_user):
    doctor, li, wang = make_user(Role.DOCTOR), make_user(Role.PATIENT), make_user(Role.PATIENT)
    group = group_create(creator=doctor, group_name="Scale-out")
    member_add(group=group, user=li, user_role=Role.PATIENT)
    member_add(group=group, user=wang, user_role=Role.PATIENT)
    a, b = start_server("a"), start_server("b")

    async def scenario():
        clients = {
            "doctor@a": (_client("doctor@a", doctor), a),
            "li@b": (_client("li@b", li), b),
            "wang@a": (_client("wang@a", wang), a),
            "wang@b": (_client("wang@b", wang), b),
        }
        for client, server in clients.values():
            hello = await client.connect(server.ws_url)
            assert hello["groups"] == [{"group_id": group.group_id, "last_seq": 0, "last_read_seq": 0,
                                        "unread_count": 0}]

        async with httpx.AsyncClient() as http:
            sent = await http.post(f"{a.url}/api/message/send", json={"group_id": group.group_id, "content": "by http"},
                                   headers={"Authorization": f"Bearer {access_token(doctor)}"})
        assert sent.status_code == 201
        li_client = clients["li@b"][0]
        await li_client.send({"type": "send_message", "group_id": group.group_id, "content": "by websocket",
                              "client_msg_id": "li-1"})
        ack = await li_client.wait_for(lambda f: f["type"] == "message_ack")
        assert ack["message"]["seq"] == 2

        for client, _ in clients.values():
            await client.wait_for(lambda f: f["type"] == "message" and f["seq"] == 2)
        await assert_nothing_arrives(*(client for client, _ in clients.values()),  # after seq 2, a duplicate
                                     match=lambda f: f["type"] == "message", grace=ABSENCE_GRACE)
        for name, (client, _) in clients.items():
            pushes = [(f["seq"], f["content"]) for f in client.frames if f["type"] == "message"]
            assert pushes == [(1, "by http"), (2, "by websocket")], name
            await client.close()

    asyncio.run(scenario())
    # The servers logged the connections, but never the tokens in their query strings.
    logs = a.output() + b.output()
    for user in (doctor, li, wang):
        assert user.user_id in logs
    assert "token=" not in logs and "eyJ" not in logs
