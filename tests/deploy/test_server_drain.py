"""SIGTERM under load: the requests a server is serving finish (each answered, each message stored once), keep-alive
connections are closed after their response, a request on its way on one is answered too, and the process exits
within WS_SHUTDOWN_GRACE + WS_SHUTDOWN_EXIT_MARGIN, even when requests are stuck in the database past the grace
(before, a request thread waiting for the stopped event loop kept the process alive for ever)."""
import asyncio
import signal
import time
import uuid

import httpx
import psycopg
import pytest
from daphne.http_protocol import WebRequest
from daphne.server import Server as DaphneServer
from django.conf import settings
from twisted.web import http

from groups.services import group_create, member_add
from tests.support import live
from tests.support.api import access_token
from tests.support.live import ENGINES, assert_all_received, assert_stored_once, needs_real_services
from tests.support.waiting import wait_for
from tests.support.wsclient import Client
from users.models import Role

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]

GRACE = 3
SENDERS = 16
MACHINE_SLACK = 1.0  # seconds for the shared machine to reap a process it was told has exited
BOUND = GRACE + settings.WS_SHUTDOWN_EXIT_MARGIN  # seconds within which a stopping server is gone


def test_what_the_drain_relies_on_in_daphne_and_twisted():
    import inspect

    # In-flight HTTP requests are daphne's WebRequest entries of Server.connections not yet marked disconnected.
    assert "self.server.protocol_connected(self)" in inspect.getsource(WebRequest.__init__)
    assert "self.server.protocol_disconnected(self)" in inspect.getsource(WebRequest.finish)
    assert "protocol.handle_reply(message)" in inspect.getsource(DaphneServer.handle_reply)
    # A channel that is not persistent is closed once its response is done.
    assert "if self.persistent:" in inspect.getsource(http.HTTPChannel.requestDone)
    assert "self.loseConnection()" in inspect.getsource(http.HTTPChannel.requestDone)


def _team(make_user):
    doctor, patient = make_user(Role.DOCTOR), make_user(Role.PATIENT)
    group = group_create(creator=doctor, group_name="Drain", ai_enabled=False)
    member_add(group=group, user=patient, user_role=Role.PATIENT)
    return doctor, patient, group


async def _load(server, token, group_id, told, outcomes, term_at):
    """Keep sending until the server is gone; note how each attempt begun before SIGTERM ended."""
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http_client:
        i = 0
        while True:
            began = time.monotonic()
            before_term = term_at[0] is None
            try:
                r = await http_client.post("/api/message/send", headers={"Authorization": f"Bearer {token}"},
                                           json={"group_id": group_id, "content": f"{uuid.uuid4().hex} {i}"})
            except httpx.ConnectError:
                outcomes.append(("refused", before_term, began))
                return
            except httpx.TransportError as exc:
                outcomes.append((type(exc).__name__, before_term, began))
                return
            outcomes.append((r.status_code, before_term, began))
            if r.status_code == 201:
                told.append(r.json())
            i += 1


@pytest.mark.parametrize("engine", ENGINES)
def test_sigterm_under_load_finishes_the_requests_in_flight_and_exits_in_time(start_server, make_user, engine):
    doctor, patient, group = _team(make_user)
    server = start_server("loaded", engine, WS_SHUTDOWN_GRACE=GRACE, IM_SEND_RATE="100000/min")
    token = access_token(doctor)
    told, outcomes, term_at = [], [], [None]

    async def scenario():
        watcher = Client("patient", patient.user_id, access_token(patient))
        await watcher.connect(server.ws_url)
        load = [asyncio.create_task(_load(server, token, group.group_id, told, outcomes, term_at))
                for _ in range(SENDERS)]
        while len(told) < 100:
            await asyncio.sleep(0.01)
        term_at[0] = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*load)
        await asyncio.get_running_loop().run_in_executor(None, server.proc.wait, BOUND + 30)
        exited = time.monotonic() - term_at[0]
        assert await watcher.wait_closed(timeout=10) == 1012
        return exited

    exited = asyncio.run(scenario())
    in_flight = [o for o in outcomes if o[1] and o[0] != 201]
    assert in_flight == [], f"requests begun before SIGTERM that were not answered: {in_flight}"
    # Each sender's request in flight at SIGTERM was answered; after it the port was closed (nothing half-done).
    assert {o[0] for o in outcomes if not o[1]} <= {201, "refused"}, outcomes
    # A draining server closes each keep-alive connection after its response: a sender gets an answer or two more
    # (the one in flight, one that was on its way), then finds the port closed. Counted from when the server could
    # have seen the signal: under load its loop takes it up some milliseconds after it was sent, and the senders'
    # requests of those milliseconds are answered as any other.
    late = [o for o in outcomes if o[0] == 201 and o[2] > term_at[0] + MACHINE_SLACK]
    assert late == [], f"answered though begun more than {MACHINE_SLACK} s after SIGTERM: {late}"
    assert exited <= BOUND + MACHINE_SLACK, exited
    assert server.proc.returncode == 0, server.output()[-3000:]
    print(f"\n{len(told)} stored, exited {exited:.2f} s after SIGTERM")
    assert_stored_once(told)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_request_on_a_kept_alive_connection_soon_after_sigterm_is_answered(start_server, make_user, engine):
    """A client that had its answer just before SIGTERM and sends its next request on the same connection a moment
    later gets it answered, with Connection: close, instead of a reset: a draining server keeps a kept-alive
    connection until HTTP_SHUTDOWN_IDLE_TIMEOUT has passed without a request on it."""
    doctor, patient, group = _team(make_user)
    server = start_server("idle", engine, WS_SHUTDOWN_GRACE=GRACE, HTTP_SHUTDOWN_IDLE_TIMEOUT=GRACE)
    headers = {"Authorization": f"Bearer {access_token(doctor)}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        before = client.post("/api/message/send", json={"group_id": group.group_id, "content": "before"})
        server.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "Shutting down: stopped listening" in server.output(), timeout=10)
        after = client.post("/api/message/send", json={"group_id": group.group_id, "content": "after"})
        with pytest.raises(httpx.ConnectError):  # its connection closed, and the port too
            client.post("/api/message/send", json={"group_id": group.group_id, "content": "too late"})
    server.proc.wait(BOUND + 30)
    assert (before.status_code, after.status_code) == (201, 201), after.text
    assert after.headers["connection"] == "close"
    assert server.proc.returncode == 0, server.output()[-3000:]
    assert_stored_once([before.json(), after.json()])


@pytest.mark.parametrize("engine", ENGINES)
def test_requests_stuck_past_the_grace_do_not_keep_the_process_alive(start_server, make_user, engine):
    doctor, patient, group = _team(make_user)
    server = start_server("stuck", engine, WS_SHUTDOWN_GRACE=GRACE, IM_SEND_RATE="100000/min")
    token = access_token(doctor)
    headers = {"Authorization": f"Bearer {token}"}
    stored = [httpx.post(f"{server.url}/api/message/send", json={"group_id": group.group_id, "content": f"before {i}"},
                         headers=headers, timeout=10).json() for i in range(5)]
    told, outcomes, term_at = [], [], [None]
    # Another session holds the group's row: every send waits for it, far past the grace.
    locker = psycopg.connect(live.test_database_url())
    locker.execute("SELECT id FROM groups WHERE group_id = %s FOR UPDATE", [group.group_id])

    async def scenario():
        load = [asyncio.create_task(_load(server, token, group.group_id, told, outcomes, term_at))
                for _ in range(4)]
        await asyncio.sleep(1)  # every sender waits for the lock
        term_at[0] = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.get_running_loop().run_in_executor(None, server.proc.wait, BOUND + 30)
        exited = time.monotonic() - term_at[0]
        await asyncio.gather(*load)
        return exited

    try:
        exited = asyncio.run(scenario())
    finally:
        locker.rollback()
        locker.close()
    assert exited <= BOUND + MACHINE_SLACK, exited
    assert exited >= GRACE - 0.5, "the requests were not given their grace"
    assert "4 HTTP requests still running after" in server.output(), server.output()[-3000:]
    # The sends cut off never committed, not even once the lock was free: none was told stored, none is. Those
    # whose statement was cancelled at the bound were told so (503: retry) and found the port closed on their next
    # try; the others were cut off.
    assert told == [] and {o[0] for o in outcomes} <= {503, "RemoteProtocolError", "ReadError", "refused"}, outcomes
    assert_stored_once(stored)
    successor = start_server("successor", engine)

    async def check():
        watcher = Client("patient", patient.user_id, access_token(patient))
        await watcher.connect(successor.ws_url)
        await assert_all_received([watcher], stored)
        assert sorted(watcher.history[group.group_id]) == [1, 2, 3, 4, 5]
        await watcher.close()

    asyncio.run(check())
