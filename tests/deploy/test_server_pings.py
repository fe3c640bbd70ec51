"""The server pings every WebSocket client (--ping-interval, WS_PING_INTERVAL in deploy/Procfile) and drops one
that has said nothing for --ping-timeout seconds after a ping, so that a vanished client's connection does not live
on; a client that answers stays connected."""
import asyncio
import time

import pytest

from tests.support.live import ENGINES, needs_shared_database
from tests.support.rawws import RawClient
from tests.support.wsclient import Client
from users.models import Role
from users.services import user_tokens

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_shared_database()]

PING = 9
INTERVAL, TIMEOUT = 1, 1
WATCHED = 15  # seconds the silent client is given to be dropped; about 2 are needed


@pytest.mark.parametrize("engine", ENGINES)
def test_a_client_silent_after_a_ping_is_dropped_and_one_that_answers_stays(start_production_server, make_user,
                                                                             engine):
    patient = make_user(Role.PATIENT)
    token = user_tokens(user=patient)["access"]
    server = start_production_server("server", engine, WS_PING_INTERVAL=INTERVAL, WS_PING_TIMEOUT=TIMEOUT)
    silent = RawClient(server.port, patient.user_id, token)  # reads, but never answers a ping

    async def scenario():
        answering = Client("patient", patient.user_id, token)  # the websockets library answers every ping
        await answering.connect(server.ws_url)
        began = time.monotonic()
        frames = await asyncio.to_thread(silent.read_frames, WATCHED)
        dropped_after = time.monotonic() - began
        assert [opcode for opcode, _ in frames].count(PING) >= 1, frames
        assert dropped_after < WATCHED - 1, "the silent client was never dropped"
        await asyncio.sleep(3 * INTERVAL)
        assert not answering.closed.is_set(), answering.close_code
        mark = len(answering.frames)
        await answering.send({"type": "ping"})
        await answering.wait_for(lambda f: f["type"] == "pong", start=mark)
        await answering.close()
        return dropped_after

    dropped_after = asyncio.run(scenario())
    print(f"\n{engine}: the silent client was dropped {dropped_after:.1f} s after the answering one connected")
    silent.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_message_over_ws_max_message_bytes_closes_the_connection_with_1009(start_production_server, make_user,
                                                                              engine):
    """The server's own bound on an incoming message (WS_MAX_MESSAGE_BYTES, on either engine): a frame under it but
    over WS_MAX_FRAME_BYTES is the consumer's to refuse with an error; one over it closes the connection."""
    patient = make_user(Role.PATIENT)
    token = user_tokens(user=patient)["access"]
    server = start_production_server("server", engine, WS_MAX_MESSAGE_BYTES=100_000, WS_MAX_FRAME_BYTES=1_000)

    async def scenario():
        client = Client("patient", patient.user_id, token)
        await client.connect(server.ws_url)
        await client.send({"type": "ping", "padding": "x" * 90_000})
        refused = await client.wait_for(lambda f: f["type"] == "error")
        await client.send({"type": "ping", "padding": "x" * 110_000})
        return refused, await client.wait_closed(timeout=10)

    refused, code = asyncio.run(scenario())
    assert refused["code"] == "PAYLOAD_TOO_LARGE", refused
    assert code == 1009
