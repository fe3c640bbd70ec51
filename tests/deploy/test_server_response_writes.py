"""The uvicorn engine sends a response's head with its first body part, in one write: a client reading the answer
to a send wakes once, not twice (imserver.server_uvicorn._HeadHeld)."""
import asyncio
import socket
import threading
import time

import pytest
import uvicorn

from imserver.server_uvicorn import DrainingHttpProtocol

PAUSE = 0.5  # seconds the application waits between the head and the body: far more than a loopback write takes
FAILED_SENDS: list[Exception] = []


async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")] + (
                    [] if scope["path"] == "/chunks" else [(b"content-length", b"10")])})
    await asyncio.sleep(PAUSE)
    if scope["path"] == "/chunks":
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.sleep(PAUSE)
        await send({"type": "http.response.body", "body": b"second"})
    else:
        try:
            await send({"type": "http.response.body", "body": b"0123456789"})
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            FAILED_SENDS.append(exc)


@pytest.fixture(scope="module")
def server():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(application, http=DrainingHttpProtocol, loop="uvloop", lifespan="off",
                            log_config=None, access_log=False)
    serving = uvicorn.Server(config)
    thread = threading.Thread(target=serving.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not serving.started:
        time.sleep(0.01)
    yield listener.getsockname()
    serving.should_exit = True
    thread.join(10)


def reads(address, path: str, *, close: bool = False) -> list[bytes]:
    """What each read of the answer returned, until it was whole (or the server closed)."""
    with socket.create_connection(address, timeout=5) as client:
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n{'Connection: close' if close else ''}\r\n\r\n"
                       .encode())
        got = []
        while True:
            chunk = client.recv(65536)
            if not chunk:
                return got
            got.append(chunk)
            whole = b"".join(got)
            if whole.endswith((b"0123456789", b"0\r\n\r\n")):
                return got
            time.sleep(0.1)  # every byte already written has arrived: what arrives next was written later


def test_head_and_body_arrive_together(server):
    got = reads(server, "/")
    assert len(got) == 1, got
    assert got[0].startswith(b"HTTP/1.1 200 OK\r\n") and got[0].endswith(b"\r\n\r\n0123456789")


def test_a_closing_answer_sends_what_it_held_before_closing(server):
    got = reads(server, "/", close=True)
    assert b"".join(got).startswith(b"HTTP/1.1 200 OK\r\n") and b"".join(got).endswith(b"0123456789")
    assert len(got) == 1, got


def test_a_streamed_answer_sends_its_head_with_the_first_part_and_the_rest_as_it_comes(server):
    got = reads(server, "/chunks")
    assert len(got) == 2, got
    assert got[0].startswith(b"HTTP/1.1 200 OK\r\n") and got[0].endswith(b"\r\n\r\n5\r\nfirst\r\n")
    assert got[1] == b"6\r\nsecond\r\n0\r\n\r\n"


def test_a_client_gone_before_the_body_costs_the_application_nothing(server):
    with socket.create_connection(server, timeout=5) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    time.sleep(PAUSE * 2)  # the application sends its body to the closed connection
    assert FAILED_SENDS == []
    assert len(reads(server, "/")) == 1  # and the server answers the next client as before
