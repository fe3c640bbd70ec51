"""Nothing outlives a revoked user, on real servers: two processes sharing Redis, one on each ASGI server the
launcher runs (daphne and uvicorn), so that every closing path is seen on both.

Deactivation, deletion and token expiry close the user's sockets on both processes with the contract's code,
and nothing more reaches them; a membership deleted by any path stops the pushes of its group at once."""
import asyncio
import time
from datetime import timedelta

import httpx
import pytest
from asgiref.sync import sync_to_async
from rest_framework_simplejwt.tokens import AccessToken

from chat.services import message_send
from groups.models import ChatGroup, GroupMember
from groups.services import group_create, member_add
from tests.support.live import ENGINES, needs_real_services
from tests.support.teams import care_team
from tests.support.waiting import ABSENCE_GRACE, assert_nothing_arrives
from tests.support.wsclient import Client
from users.models import Role, User
from users.services import user_tokens

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]


def _bearer(user) -> dict:
    return {"Authorization": f"Bearer {AccessToken.for_user(user)}"}


@pytest.fixture
def team(make_user):
    doctor, (patient,), group = care_team(make_user, 1)
    return doctor, patient, group


@pytest.fixture
def servers(start_server):
    return tuple(start_server(name, engine) for name, engine in zip("ab", ENGINES))


async def _connect_on_both(user, servers, token=None) -> list[Client]:
    clients = []
    for server in servers:
        client = Client(f"{user.username}@{server.name}", user.user_id, token or str(AccessToken.for_user(user)))
        assert await client.connect(server.ws_url) is not None
        clients.append(client)
    return clients


async def _send(server, sender, group, content) -> dict:
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{server.url}/api/message/send", headers=_bearer(sender),
                                 json={"group_id": group.group_id, "content": content})
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_deactivation_closes_every_socket_on_both_servers_with_4403(servers, team, staff):
    doctor, patient, group = team
    a, b = servers
    tokens = user_tokens(user=patient)

    async def scenario():
        sockets = await _connect_on_both(patient, servers)
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{a.url}/api/user/{patient.user_id}/deactivate", headers=_bearer(staff))
            assert answer.status_code == 200 and answer.json()["is_active"] is False
            started = time.monotonic()
            codes = [await s.wait_closed(timeout=2) for s in sockets]
            closed_within = time.monotonic() - started
            await _send(b, doctor, group, "after the deactivation")
            await assert_nothing_arrives(*sockets, match=lambda f: f.get("content") == "after the deactivation",
                                         grace=ABSENCE_GRACE)
            # REST refuses the access token, the refresh token is blacklisted, a new socket is refused.
            me = await http.get(f"{b.url}/api/user/me", headers={"Authorization": f"Bearer {tokens['access']}"})
            refreshed = await http.post(f"{a.url}/api/auth/token/refresh", json={"refresh": tokens["refresh"]})
        again = Client("again", patient.user_id, tokens["access"])
        hello = await again.connect(b.ws_url)
        return codes, closed_within, sockets, me, refreshed, hello, await again.wait_closed()

    codes, closed_within, sockets, me, refreshed, hello, again_code = asyncio.run(scenario())
    assert codes == [4403, 4403] and closed_within < 2
    assert all(f.get("content") != "after the deactivation" for s in sockets for f in s.frames)
    assert me.status_code == 401 and refreshed.status_code == 401
    assert hello is None and again_code == 4403
    # Their messages stay; reactivated, they log in again with new tokens (the old refresh stays refused).
    patient.refresh_from_db()
    with httpx.Client() as http:
        assert http.post(f"{a.url}/api/user/{patient.user_id}/reactivate", headers=_bearer(staff)).json()["is_active"]
        assert http.get(f"{b.url}/api/user/me", headers=_bearer(patient)).status_code == 200
        assert http.post(f"{a.url}/api/auth/token/refresh", json={"refresh": tokens["refresh"]}).status_code == 401


def test_a_deleted_user_is_closed_and_gets_nothing_more(servers, team):
    doctor, patient, group = team
    a, b = servers

    async def scenario():
        sockets = await _connect_on_both(patient, servers)
        await sync_to_async(User.objects.filter(pk=patient.pk).delete)()  # a shell, the admin: no service
        codes = [await s.wait_closed(timeout=2) for s in sockets]
        await _send(a, doctor, group, "after the deletion")
        await assert_nothing_arrives(*sockets, match=lambda f: f.get("content") == "after the deletion",
                                     grace=ABSENCE_GRACE)
        return codes, sockets

    codes, sockets = asyncio.run(scenario())
    assert codes == [4403, 4403]
    assert all(f.get("content") != "after the deletion" for s in sockets for f in s.frames)


def test_an_expiring_access_token_closes_its_socket_with_4401_at_expiry(servers, team):
    doctor, patient, group = team
    token = AccessToken.for_user(patient)
    token.set_exp(lifetime=timedelta(seconds=2))

    async def scenario():
        sockets = await _connect_on_both(patient, servers, token=str(token))
        await _send(servers[0], doctor, group, "before the expiry")
        for s in sockets:
            await s.wait_for(lambda f: f.get("content") == "before the expiry")
        codes = [await s.wait_closed(timeout=5) for s in sockets]
        return codes, time.time()

    codes, closed_at = asyncio.run(scenario())
    assert codes == [4401, 4401]
    assert closed_at >= token["exp"]


@pytest.mark.parametrize("how", ["queryset delete", "group deleted"])
def test_a_membership_deleted_by_any_path_stops_its_pushes_at_once(servers, team, make_user, how):
    doctor, patient, group = team
    other = group_create(creator=doctor, group_name="Still here", ai_enabled=False)
    member_add(group=other, user=patient, user_role=Role.PATIENT)

    def delete():
        if how == "queryset delete":
            GroupMember.objects.filter(group=group, user=patient).delete()
        else:
            ChatGroup.objects.filter(pk=group.pk).delete()

    async def scenario():
        sockets = await _connect_on_both(patient, servers)
        await sync_to_async(delete)()
        for s in sockets:
            await s.wait_for(lambda f: f["type"] == "member_left" and f["group_id"] == group.group_id)
        if how == "queryset delete":
            await sync_to_async(message_send)(sender=doctor, group=group, content="not for the patient")
        await _send(servers[1], doctor, other, "for the patient")
        for s in sockets:
            await s.wait_for(lambda f: f.get("content") == "for the patient")
        return sockets, [s.closed.is_set() for s in sockets]

    sockets, closed = asyncio.run(scenario())
    assert all(f.get("content") != "not for the patient" for s in sockets for f in s.frames)
    assert closed == [False, False]  # losing one group does not end the connection


def test_logout_refuses_that_refresh_token_and_only_its_owner_may_log_it_out(servers, team):
    doctor, patient, _ = team
    a, _ = servers
    mine, theirs = user_tokens(user=patient), user_tokens(user=doctor)
    with httpx.Client(base_url=a.url) as http:
        assert http.post("/api/auth/logout", json={"refresh": theirs["refresh"]},
                         headers=_bearer(patient)).status_code == 403
        assert http.post("/api/auth/logout", json={"refresh": mine["refresh"]}).status_code == 401
        assert http.post("/api/auth/logout", json={"refresh": mine["refresh"]},
                         headers=_bearer(patient)).status_code == 204
        refused = http.post("/api/auth/token/refresh", json={"refresh": mine["refresh"]})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "NOT_AUTHENTICATED"
        assert http.post("/api/auth/token/refresh", json={"refresh": theirs["refresh"]}).status_code == 200
