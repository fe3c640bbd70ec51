"""SIGTERM: the server stops listening, closes every WebSocket with 1012 (server restarting: reconnect at once and
sync) and exits within WS_SHUTDOWN_GRACE, even when a client never answers the close."""
import asyncio
import signal
import socket
import time

import pytest

from groups.services import group_create, member_add
from tests.support.live import ENGINES, needs_shared_database
from tests.support.rawws import RawClient, close_code
from tests.support.wsclient import Client
from users.models import Role
from users.services import user_tokens

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_shared_database()]

GRACE = 3
MARGIN = 15  # generous: the machine is shared


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("engine", ENGINES)
def test_sigterm_closes_websockets_with_1012_and_exits(start_server, make_user, engine):
    doctor, patient = make_user(Role.DOCTOR), make_user(Role.PATIENT)
    group = group_create(creator=doctor, group_name="Restart", ai_enabled=False)
    member_add(group=group, user=patient, user_role=Role.PATIENT)
    server = start_server("server", engine, WS_SHUTDOWN_GRACE=GRACE)
    doctor_token, patient_token = user_tokens(user=doctor)["access"], user_tokens(user=patient)["access"]
    silent = RawClient(server.port, patient.user_id, patient_token)  # never answers the close

    async def scenario():
        client = Client("doctor", doctor.user_id, doctor_token)
        await client.connect(server.ws_url)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(client.closed.wait(), timeout=GRACE + MARGIN)
        assert client.ws.close_code == 1012, (client.ws.close_code, client.ws.close_reason)
        # The server stopped listening before it sent the close frames: nobody new gets in while it drains.
        assert refused(server.port)
        return started

    started = asyncio.run(scenario())
    assert close_code(silent.read_frames(timeout=GRACE + MARGIN)) == 1012
    server.proc.wait(timeout=GRACE + MARGIN)
    print(f"\nexited {time.monotonic() - started:.1f} s after SIGTERM (grace {GRACE} s), code {server.proc.returncode}")
    assert server.proc.returncode == 0, server.output()[-2000:]
    assert "closing 2 WebSocket connections with 1012" in server.output()
    # The server's own shutdown step ran after ours.
    assert {"daphne": "pending application instances", "uvicorn": "application instances cancelled"}[engine] \
        in server.output()
    silent.close()
