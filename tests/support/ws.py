"""Driving the WebSocket endpoint of the full ASGI stack from sync tests.

Each test writes its scenario as a coroutine and runs it with `run(...)` (asgiref's async_to_sync, so the
consumer's database work runs in the test's own thread and sees the test's rows; but sends run in a thread pool,
so tests that send frames use transaction=True). Sync services called from inside a scenario go through `db(...)`.
"""
import asyncio
import contextlib
import json

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from channels.testing import WebsocketCommunicator

from groups.services import group_create, member_add
from imserver.asgi import application
from tests.support.api import access_token
from users.models import Role

TIMEOUT = 2  # seconds a frame the client is owed may take
QUIET = 0.3  # seconds of silence that count as "nothing came"


def run(scenario, *args, **kwargs):
    """Run an async scenario to completion from a sync test."""
    return async_to_sync(scenario)(*args, **kwargs)


def db(func):
    """A sync service made awaitable from a scenario."""
    return database_sync_to_async(func)


@pytest.fixture
def fresh_channel_layer():
    """A channel layer of its own for each test: no group or receive state crosses tests or event loops.

    Not autouse: the modules that watch connections ask for it with `usefixtures`, as they always had it."""
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    yield
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)


@pytest.fixture
def quiet_group(doctor, patient, assistant):
    """`doctor`'s group with `patient` and `assistant`, AI off so no AI traffic joins the frames under test."""
    group = group_create(creator=doctor, group_name="Ward 9", ai_enabled=False)
    member_add(group=group, user=patient, user_role=Role.PATIENT)
    member_add(group=group, user=assistant, user_role=Role.AI_ASSISTANT)
    return group


def communicator(path_user_id: str, *, token: str | None = None, origin: str | None = None,
                 cookie: str | None = None) -> WebsocketCommunicator:
    path = f"/ws/{path_user_id}" + (f"?token={token}" if token is not None else "")
    headers = []
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def handshake(comm: WebsocketCommunicator) -> tuple[bool, object]:
    """`(accepted, subprotocol or close code)`; a refused handshake leaves nothing running.

    The server refuses by accepting and closing at once with the contract's code (a browser sees no more than
    an HTTP 403 of a refused handshake), so the first frame is read here and kept for `receive`."""
    accepted, detail = await comm.connect(timeout=TIMEOUT)
    if accepted:
        first = await comm.receive_output(timeout=TIMEOUT)
        if first["type"] == "websocket.close":
            accepted, detail = False, first.get("code")
        else:
            comm.held = [first]
    if not accepted:
        await comm.disconnect(timeout=TIMEOUT)  # what the server tells the app after refusing
    return accepted, detail


@contextlib.asynccontextmanager
async def connected(user, **kwargs):
    """An accepted connection of `user` whose `connected` frame has been read (`ws.hello`)."""
    kwargs.setdefault("token", access_token(user) if "cookie" not in kwargs else None)
    comm = communicator(user.user_id, **kwargs)
    accepted, detail = await handshake(comm)
    assert accepted, f"handshake refused with {detail}"
    try:
        comm.hello = await receive(comm)
        assert comm.hello["type"] == "connected", comm.hello
        yield comm
    finally:
        await comm.disconnect(timeout=TIMEOUT)


async def receive(comm: WebsocketCommunicator) -> dict:
    """The next frame, as the client would parse it."""
    held = getattr(comm, "held", None)
    raw = held.pop(0)["text"] if held else await comm.receive_from(timeout=TIMEOUT)
    return json.loads(raw)


async def receive_many(comm: WebsocketCommunicator, count: int) -> dict[str, dict]:
    """The next `count` frames keyed by type, for frames whose relative order the contract leaves open."""
    frames = [await receive(comm) for _ in range(count)]
    by_type = {frame["type"]: frame for frame in frames}
    assert len(by_type) == count, f"expected {count} frames of distinct types, got {frames}"
    return by_type


async def nothing(*comms: WebsocketCommunicator) -> None:
    """Assert that none of the connections gets another frame (all watched at once)."""
    quiet = await asyncio.gather(*(comm.receive_nothing(timeout=QUIET) for comm in comms))
    stray = [await comm.receive_from() for comm, ok in zip(comms, quiet) if not ok]
    assert not stray, f"unexpected frames {stray}"


async def ask(comm: WebsocketCommunicator, frame: dict | str) -> dict:
    """Send one frame (a dict as JSON, a str as is) and read the next frame."""
    await comm.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))
    return await receive(comm)


async def send_message(comm: WebsocketCommunicator, frame: dict) -> dict:
    """Send a `send_message` frame and read up to its answer (`message_ack` or `error`). The sender's own push
    may come before or after its ack (the contract leaves the order open); frames read past are kept for
    `receive`."""
    await comm.send_to(text_data=json.dumps(frame))
    passed = []
    while (got := await receive(comm))["type"] not in ("message_ack", "error"):
        passed.append({"text": json.dumps(got)})
    comm.held = passed + (getattr(comm, "held", None) or [])
    return got


async def assert_usable(comm: WebsocketCommunicator) -> None:
    """The connection is still open and answering."""
    pong = await ask(comm, {"type": "ping"})
    assert pong["type"] == "pong", pong
