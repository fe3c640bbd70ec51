"""kill -9 one server while its clients are connected: they reconnect to the survivor, sync, lose nothing."""
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

TOTAL = 60


def test_clients_of_a_killed_server_recover_every_message(start_server, make_user):
    doctor = make_user(Role.DOCTOR)
    patients = [make_user(Role.PATIENT) for _ in range(3)]
    group = group_create(creator=doctor, group_name="Crash")
    for p in patients:
        member_add(group=group, user=p, user_role=Role.PATIENT)
    doomed, survivor = start_server("doomed"), start_server("survivor")
    token = access_token(doctor)

    async def scenario():
        on_doomed = [Client(f"p{i}", p.user_id, access_token(p)) for i, p in enumerate(patients)]
        watcher = Client("doctor", doctor.user_id, token)
        for client in on_doomed:
            await client.connect(doomed.ws_url)
        await watcher.connect(survivor.ws_url)
        answered = []

        async def send_all():
            async with httpx.AsyncClient(base_url=survivor.url, timeout=10) as http:
                for i in range(TOTAL):
                    r = await http.post("/api/message/send", json={"group_id": group.group_id, "content": f"m{i}"},
                                        headers={"Authorization": f"Bearer {token}"})
                    assert r.status_code == 201, r.text
                    answered.append(r.json()["seq"])
                    await asyncio.sleep(0.02)

        sender = asyncio.create_task(send_all())
        while len(answered) < TOTAL // 3:
            await asyncio.sleep(0.01)
        doomed.kill()
        for client in on_doomed:
            await asyncio.wait_for(client.closed.wait(), timeout=10)
            await client.connect(survivor.ws_url)
            await client.sync_all(group.group_id)
        await sender
        await asyncio.sleep(0.5)
        for client in [*on_doomed, watcher]:
            await client.sync_all(group.group_id)
            assert sorted(client.history[group.group_id]) == list(range(1, TOTAL + 1)), client.name
            for pushes in client.connection_pushes:
                assert len(pushes) == len(set(pushes)), f"{client.name} got a push twice"
            await client.close()
        # The watcher never lost its connection: it saw every message live, in order.
        assert [seq for _, seq in watcher.push_seqs] == list(range(1, TOTAL + 1))

    asyncio.run(scenario())
    assert list(Message.objects.filter(group=group).order_by("seq").values_list("seq", flat=True)) == \
        list(range(1, TOTAL + 1))
