"""The `send` benchmark's own WebSocket client (bench.wsload.Socket) against a real WebSocket server (websockets'):
what the servers may send it is read whole, in order, and what it sends arrives as sent."""
import asyncio

import pytest
from websockets.asyncio.server import serve

from bench.wsload import ConnectionClosed, Socket

SIZES = [0, 1, 125, 126, 65535, 65536, 200_000]  # each length encoding of RFC 6455, on both sides of its limits


async def _talk(script):
    """Run `script(socket, received)` against a server that answers every text with its frames of the script."""
    heard: list[str] = []

    async def handler(connection):
        async for text in connection:
            heard.append(text)
            if text == "sizes":
                for size in SIZES:
                    await connection.send("x" * size)
            elif text == "fragments":
                await connection.send(["part one, ", "part two, ", "part three"])  # one message in three frames
            elif text == "ping":
                await asyncio.wait_for(await connection.ping(b"are you there"), 5)  # answered, or this times out
                await connection.send("pong came")
            elif text == "bye":
                await connection.close(1000)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        received: list[bytes] = []
        socket = await Socket.connect(f"ws://127.0.0.1:{port}/ws/u?token=t", received.append)
        await script(socket, received)
        await socket.close()
    return heard, received


async def _until(received: list, count: int):
    for _ in range(500):
        if len(received) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(received)} of {count} messages")


def test_every_length_encoding_is_read_whole_and_in_order():
    async def script(socket, received):
        socket.send("sizes")
        await _until(received, len(SIZES))

    _, received = asyncio.run(_talk(script))
    assert [len(text) for text in received] == SIZES


def test_what_it_sends_arrives_as_sent_whatever_its_length():
    texts = ["é" * 10, "a" * 130, "b" * 70_000]

    async def script(socket, received):
        for text in texts:
            socket.send(text)
        socket.send("sizes")  # the server answers only once it has read the three before
        await _until(received, len(SIZES))

    heard, _ = asyncio.run(_talk(script))
    assert heard == [*texts, "sizes"]


@pytest.mark.parametrize("ask, answer", [
    ("fragments", b"part one, part two, part three"),  # a message of three frames, handed over once joined
    ("ping", b"pong came"),  # the server goes on only once its ping is answered
])
def test_fragments_are_joined_and_pings_answered(ask, answer):
    async def script(socket, received):
        socket.send(ask)
        await _until(received, 1)

    _, received = asyncio.run(_talk(script))
    assert received == [answer]


def test_the_servers_close_ends_it_and_a_send_after_it_is_refused():
    async def script(socket, received):
        socket.send("bye")
        await asyncio.wait_for(socket.closed, 5)
        with pytest.raises(ConnectionClosed):
            socket.send("too late")

    heard, _ = asyncio.run(_talk(script))
    assert heard == ["bye"]


def test_a_refused_handshake_raises():
    async def script():
        async def handler(connection):
            pass

        async def refuse(connection, request):
            return connection.respond(403, "no\n")

        async with serve(handler, "127.0.0.1", 0, process_request=refuse) as server:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(ConnectionClosed, match="403"):
                await Socket.connect(f"ws://127.0.0.1:{port}/ws/u", lambda text: None)

    asyncio.run(script())
