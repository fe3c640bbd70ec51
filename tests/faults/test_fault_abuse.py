"""A client that floods frames, sends a 10 MB frame or opens hundreds of connections is limited; others are not."""
import asyncio
import json

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from chat.models import Message
from groups.services import group_create, member_add
from tests.support.api import access_token
from tests.support.live import needs_shared_database
from tests.support.wsclient import Client
from users.models import Role

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_shared_database()]


def test_an_abusive_client_is_limited_and_the_others_carry_on(start_server, make_user):
    abuser, victim, doctor = make_user(Role.PATIENT), make_user(Role.PATIENT), make_user(Role.DOCTOR)
    group = group_create(creator=doctor, group_name="Abuse", ai_enabled=False)
    member_add(group=group, user=abuser, user_role=Role.PATIENT)
    member_add(group=group, user=victim, user_role=Role.PATIENT)
    server = start_server("abuse", WS_RATE_MESSAGES="20", WS_RATE_INTERVAL="10", WS_MAX_CONNECTIONS_PER_USER="5")
    abuser_token = access_token(abuser)
    url = f"{server.ws_url}/ws/{abuser.user_id}?token={abuser_token}"

    async def scenario():
        others = Client("victim", victim.user_id, access_token(victim))
        await others.connect(server.ws_url)
        async with connect(url) as flood:
            await flood.recv()  # connected
            for i in range(200):
                await flood.send(json.dumps({"type": "send_message", "group_id": group.group_id,
                                             "content": f"flood {i}", "client_msg_id": f"f{i}"}))
            answers = []  # one answer per frame, besides the pushes of the messages stored
            while len(answers) < 200:
                frame = json.loads(await asyncio.wait_for(flood.recv(), 15))
                if frame["type"] != "message":
                    answers.append(frame)
            # Meanwhile the victim's own message goes through and is pushed as usual.
            await others.send({"type": "send_message", "group_id": group.group_id, "content": "I am fine"})
            ack = await others.wait_for(lambda f: f["type"] == "message_ack")

        # A 10 MB frame: past the server's hard limit the connection is closed; nothing else is.
        async with connect(url, max_size=None) as big:
            await big.recv()
            try:
                await big.send("x" * (10 * 1024 * 1024))
                await asyncio.wait_for(big.recv(), 10)
                big_closed = False
            except ConnectionClosed:
                big_closed = True
        # A frame past the consumer's own limit but under the server's gets an error frame, and the line stays.
        async with connect(url) as medium:
            await medium.recv()
            await medium.send(json.dumps({"type": "ping", "pad": "x" * 100_000}))
            medium_answer = json.loads(await medium.recv())
            await medium.send(json.dumps({"type": "ping"}))
            medium_pong = json.loads(await medium.recv())

            # Hundreds of connections: past the cap they are refused, the victim can still connect.
            held, refused = [], []
            for _ in range(30):
                ws = await connect(url)
                try:
                    await ws.recv()  # connected
                    held.append(ws)
                except ConnectionClosed:  # refused with the contract's close code
                    refused.append(ws.close_code)
            late = Client("victim-2", victim.user_id, access_token(victim))
            await late.connect(server.ws_url)
            for ws in held:
                await ws.close()
            await late.close()
            await others.close()
            return answers, ack, held, refused, big_closed, medium_answer, medium_pong

    answers, ack, held, refused, big_closed, medium_answer, medium_pong = asyncio.run(scenario())
    acks = [a for a in answers if a["type"] == "message_ack"]
    limited = [a for a in answers if a.get("code") == "RATE_LIMITED"]
    assert len(acks) == 20 and len(limited) == 180
    assert big_closed
    assert medium_answer["code"] == "PAYLOAD_TOO_LARGE" and medium_pong["type"] == "pong"
    assert all(a.get("client_msg_id", "").startswith("f") for a in limited)
    assert ack["message"]["content"] == "I am fine"
    assert len(held) == 4 and refused == [4429] * 26  # 5 per user, one already open
    stored = Message.objects.filter(group=group)
    assert stored.filter(content__startswith="flood").count() == 20 and stored.filter(content="I am fine").count() == 1
    assert httpx.get(f"{server.url}/health").status_code == 200
