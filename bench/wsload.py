"""The benchmark's lean WebSocket load: every member of the fixture connected once, listening, or also sending
in a closed loop (send_message, wait for its message_ack, send the next).

    python -m bench.wsload FIXTURE.json --out STATS.json [--send SECONDS] [--window N]

It prints "ready" once every connection has its `connected` frame; with --send it waits for a line "go" on its
standard input (the benchmark reads the groups' seqs first), sends for SECONDS and prints "sent", else it only
listens. Each line "count" on its standard input is answered with the deliveries so far (the benchmark waits until
they stop growing), and it stops listening at end of input, on SIGTERM or SIGINT, writing what it saw.
One asyncio process on uvloop (as the servers), no framework: the load generator must not be the bottleneck, and its
CPU is reported. Its WebSocket client is a protocol of its own (Socket): websockets' client took about 0.26 ms of CPU
per send (its ack and five deliveries read through its frame parser and message queue)."""
import argparse
import asyncio
import base64
import hashlib
import json
import random
import signal
import sys
import threading
import time
from datetime import datetime
from urllib.parse import urlsplit

import uvloop
from websockets.speedups import apply_mask

CONTENT = "hello world message body"


ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, 1.3
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


class ConnectionClosed(Exception):
    pass


class Socket(asyncio.Protocol):
    """A client's WebSocket (RFC 6455) on one transport: the handshake, the server's frames parsed in place as they
    arrive (text messages handed to `on_text` as bytes, pings answered), the client's frames masked."""

    def __init__(self, on_text):
        self.on_text = on_text
        self.buffer = bytearray()
        self.fragments: list[bytes] | None = None
        loop = asyncio.get_running_loop()
        self.opened, self.closed = loop.create_future(), loop.create_future()
        self.transport = None
        self.close_sent = False
        self.key = base64.b64encode(random.randbytes(16))

    @classmethod
    async def connect(cls, url: str, on_text) -> "Socket":
        parts = urlsplit(url)
        _, socket = await asyncio.get_running_loop().create_connection(lambda: cls(on_text), parts.hostname,
                                                                       parts.port)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        socket.transport.write(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                               f"Connection: Upgrade\r\nSec-WebSocket-Key: {socket.key.decode()}\r\n"
                               f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
        await socket.opened
        return socket

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        if not self.opened.done():
            self.opened.set_exception(ConnectionClosed("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes):
        self.buffer += data
        if not self.opened.done() and not self._handshake():
            return
        self._frames()

    def _handshake(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[:end + 4]
        accept = base64.b64encode(hashlib.sha1(self.key + ACCEPT_GUID).digest()).decode()
        lines = head.split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        if not lines[0].startswith("HTTP/1.1 101") or headers.get("sec-websocket-accept") != accept:
            self.opened.set_exception(ConnectionClosed(f"handshake refused: {lines[0]}"))
            self.transport.close()
            return False
        self.opened.set_result(None)
        return True

    def _frames(self):
        buffer, at, size = self.buffer, 0, len(self.buffer)
        while size - at >= 2:
            first, second = buffer[at], buffer[at + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if size - at < 4:
                    break
                length, head = int.from_bytes(buffer[at + 2:at + 4], "big"), 4
            elif length == 127:
                if size - at < 10:
                    break
                length, head = int.from_bytes(buffer[at + 2:at + 10], "big"), 10
            if size - at < head + length:
                break
            payload = bytes(buffer[at + head:at + head + length])
            at += head + length
            self._frame(first & 0x80, first & 0x0F, payload)
        del buffer[:at]

    def _frame(self, final: int, opcode: int, payload: bytes):
        if opcode == PING:
            self._write(PONG, payload)
        elif opcode == CLOSE:
            if not self.close_sent:
                self._write(CLOSE, payload[:2])
            self.transport.close()
        elif opcode != PONG:  # text, binary or a continuation
            if self.fragments is not None or not final:
                self.fragments = (self.fragments or []) + [payload]
                if not final:
                    return
                payload, self.fragments = b"".join(self.fragments), None
            self.on_text(payload)

    def _write(self, opcode: int, payload: bytes):
        if self.close_sent or self.transport.is_closing():
            raise ConnectionClosed("closed")
        self.close_sent = opcode == CLOSE
        length = len(payload)
        if length < 126:
            header = bytes((0x80 | opcode, 0x80 | length))
        elif length < 65536:
            header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
        mask = random.randbytes(4)
        self.transport.write(header + mask + apply_mask(payload, mask))

    def send(self, text: str):
        self._write(TEXT, text.encode())

    async def close(self):
        if not self.close_sent and not self.transport.is_closing():
            self._write(CLOSE, (1000).to_bytes(2, "big"))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), 5)
        except TimeoutError:
            self.transport.abort()


class Member:
    def __init__(self, member: dict, url: str):
        self.member, self.url = member, url
        self.deliveries = 0
        self.seen: set[tuple[str, int]] = set()
        self.delivery_ms: list[float] = []
        self.acks: list[tuple[float, float]] = []  # (acknowledged at, ms)
        self.errors: dict[str, int] = {}
        self.waiting: dict[str, asyncio.Future] = {}
        self.ws: Socket | None = None
        self.connected: asyncio.Future | None = None

    async def connect(self):
        ws_url = self.url.replace("http", "ws", 1) + f"/ws/{self.member['user_id']}?token={self.member['token']}"
        self.connected = asyncio.get_running_loop().create_future()
        self.ws = await Socket.connect(ws_url, self.take)
        frame = await self.connected
        if frame.get("type") != "connected":
            raise RuntimeError(f"not connected: {frame}")

    def take(self, text: bytes):
        frame = json.loads(text)
        if not self.connected.done():
            self.connected.set_result(frame)
            return
        kind = frame.get("type")
        if kind == "message":
            self.deliveries += 1
            self.seen.add((frame["group_id"], frame["seq"]))
            created = datetime.fromisoformat(frame["created_at"]).timestamp()
            self.delivery_ms.append((time.time() - created) * 1000)
        elif kind == "message_ack":
            future = self.waiting.pop(frame.get("client_msg_id"), None)
            if future is not None and not future.done():
                future.set_result(True)
        elif kind == "error":
            self.errors[frame.get("code", "?")] = self.errors.get(frame.get("code", "?"), 0) + 1
            future = self.waiting.pop(frame.get("client_msg_id"), None)
            if future is not None and not future.done():
                future.set_result(False)

    async def read(self):
        """Until the connection closes; a send still waiting for its answer then has none."""
        await self.ws.closed
        for future in self.waiting.values():
            if not future.done():
                future.set_result(False)
        self.waiting.clear()

    async def send_loop(self, until: float, tag: str, window: int):
        async def one_lane(lane: int):
            n = 0
            loop = asyncio.get_running_loop()
            while time.monotonic() < until:
                n += 1
                cid = f"{tag}{lane}-{n}"
                future = loop.create_future()
                self.waiting[cid] = future
                t0 = time.perf_counter()
                self.ws.send(json.dumps({"type": "send_message", "group_id": self.member["group_id"],
                                         "content": CONTENT, "client_msg_id": cid}))
                if await future:
                    self.acks.append((time.time(), (time.perf_counter() - t0) * 1000))

        await asyncio.gather(*(one_lane(lane) for lane in range(window)))


async def main(args, fixture: dict) -> dict:
    servers = fixture["servers"]
    members = [Member(m, servers[i % len(servers)]) for i, m in enumerate(fixture["members"])]
    for start in range(0, len(members), 50):
        await asyncio.gather(*(m.connect() for m in members[start:start + 50]))
    readers = [asyncio.create_task(m.read()) for m in members]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    commands = asyncio.Queue()
    threading.Thread(target=_read_commands, args=(loop, commands), daemon=True).start()
    go = asyncio.Event()
    answering = asyncio.create_task(_answer(commands, members, go, stop))
    t0 = time.time()
    if args.send:
        await go.wait()
        until = time.monotonic() + args.send
        run = f"b{time.time_ns() % 10**12}"  # client_msg_ids of this run only: a repeat would store nothing
        await asyncio.gather(*(m.send_loop(until, f"{run}-{i}-", args.window) for i, m in enumerate(members)))
        print("sent", flush=True)
    await stop.wait()
    answering.cancel()
    t1 = time.time()
    for m in members:
        await m.ws.close()
    await asyncio.gather(*readers, return_exceptions=True)
    errors: dict[str, int] = {}
    for m in members:
        for code, n in m.errors.items():
            errors[code] = errors.get(code, 0) + n
    return {
        "connections": len(members), "started": t0, "ended": t1,
        "deliveries": sum(m.deliveries for m in members),
        "duplicated": sum(m.deliveries - len(m.seen) for m in members),
        "delivery_ms": [round(ms, 2) for m in members for ms in m.delivery_ms],
        "acks": [a for m in members for a in m.acks],
        "errors": errors,
    }


def _read_commands(loop, commands: asyncio.Queue):
    for line in sys.stdin:
        loop.call_soon_threadsafe(commands.put_nowait, line.strip())
    loop.call_soon_threadsafe(commands.put_nowait, None)


async def _answer(commands: asyncio.Queue, members: list, go: asyncio.Event, stop: asyncio.Event):
    while True:
        command = await commands.get()
        if command is None:
            stop.set()
            return
        if command == "go":
            go.set()
        elif command == "count":
            print(sum(m.deliveries for m in members), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("fixture")
    parser.add_argument("--out", required=True)
    parser.add_argument("--send", type=float, default=0.0, help="seconds of closed-loop sending (0: listen only)")
    parser.add_argument("--window", type=int, default=1, help="sends in flight per connection")
    arguments = parser.parse_args()
    with open(arguments.fixture) as source:
        loaded = json.load(source)
    result = uvloop.run(main(arguments, loaded))
    with open(arguments.out, "w") as out:
        json.dump(result, out)
