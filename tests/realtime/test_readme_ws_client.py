"""The README's typed WebSocket client, run as it is written: it hands every message over once and in seq order
across a server restart (1012, then sync), refreshes its token after a 4401, and stops on a 4403."""
import asyncio
import importlib.util
import re

import pytest
from django.db import connections
from rest_framework_simplejwt.tokens import AccessToken

from chat.services import message_send
from tests.support.live import ROOT, needs_real_services
from users.services import user_deactivate

pytestmark = [pytest.mark.django_db(transaction=True), needs_real_services()]


def readme_client(tmp_path):
    """The python block after the README's ws-client marker, imported as a module."""
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- ws-client.*?-->\n```python\n(.*?)```", readme, re.DOTALL).group(1)
    path = tmp_path / "imclient.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("imclient", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def in_thread(func, *args, **kwargs):
    """Run ORM code off the event loop, closing that thread's connections after."""
    def run():
        try:
            return func(*args, **kwargs)
        finally:
            connections.close_all()

    return await asyncio.to_thread(run)


async def until(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached in {timeout} s")
        await asyncio.sleep(0.05)


def test_client_survives_a_restart_refreshes_its_token_and_stops_when_refused(start_server, care_group, doctor,
                                                                            patient, tmp_path):
    imclient = readme_client(tmp_path)
    server = start_server()
    group_id = care_group.group_id
    asked: list[bool] = []
    received: list[tuple[str, int, str]] = []
    frames: list[dict] = []

    async def get_token(expired: bool) -> str:
        asked.append(expired)
        return "not-a-token" if len(asked) == 1 else str(AccessToken.for_user(doctor))

    async def on_message(message):
        received.append((message["group_id"], message["seq"], message["content"]))

    async def on_frame(frame):
        frames.append(frame)

    def send(content):
        message_send(sender=patient if content.startswith("p") else doctor, group=care_group, content=content)

    care_group.__class__.objects.filter(pk=care_group.pk).update(ai_mode="off")  # no AI replies among the seqs

    async def scenario():
        client = imclient.ChatClient(server.ws_url, doctor.user_id, get_token, on_message, on_frame,
                                     backoff=0.1, backoff_max=0.5)
        running = asyncio.create_task(client.run())
        await asyncio.wait_for(client.connected.wait(), 15)
        assert asked[:2] == [False, True], "a 4401 must make the client ask for a fresh token"
        await client.send(group_id, "d1 over the socket", client_msg_id="d-1")
        await until(lambda: len(received) == 1, what="the client's own message pushed back")
        await in_thread(send, "p2 over HTTP")
        await until(lambda: len(received) == 2, what="a push")

        await asyncio.to_thread(server.stop)  # SIGTERM: closed with 1012
        for content in ("p3 while down", "d4 while down", "p5 while down"):
            await in_thread(send, content)
        await asyncio.to_thread(server.restart)
        await until(lambda: len(received) == 5, 30, what="the messages sent while the server was down, synced")
        await in_thread(send, "d6 after the restart")
        await until(lambda: len(received) == 6, what="a push after the restart")

        await in_thread(user_deactivate, user=doctor)
        with pytest.raises(imclient.Refused):
            await asyncio.wait_for(running, 15)

    asyncio.run(scenario())

    assert [seq for _, seq, _ in received] == [1, 2, 3, 4, 5, 6]
    assert [content for _, _, content in received] == [
        "d1 over the socket", "p2 over HTTP", "p3 while down", "d4 while down", "p5 while down",
        "d6 after the restart"]
    assert any(f["type"] == "message_ack" and f["client_msg_id"] == "d-1" for f in frames)
    assert sum(f["type"] == "connected" for f in frames) >= 2  # it did reconnect after the restart
