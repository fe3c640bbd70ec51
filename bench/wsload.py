"""The benchmark's lean WebSocket load: every member of the fixture connected once, listening, or also sending
in a closed loop (send_message, wait for its message_ack, send the next).

    python -m bench.wsload FIXTURE.json --out STATS.json [--send SECONDS] [--window N]

It prints "ready" once every connection has its `connected` frame; with --send it waits for a line "go" on its
standard input (the benchmark reads the groups' seqs first), sends for SECONDS and prints "sent", else it only
listens. Each line "count" on its standard input is answered with the deliveries so far (the benchmark waits until
they stop growing), and it stops listening at end of input, on SIGTERM or SIGINT, writing what it saw.
One asyncio process on uvloop (as the servers), no framework: the load generator must not be the bottleneck, and its
CPU is reported."""
import argparse
import asyncio
import json
import signal
import sys
import threading
import time
from datetime import datetime

import uvloop
import websockets

CONTENT = "hello world message body"


class Member:
    def __init__(self, member: dict, url: str):
        self.member, self.url = member, url
        self.deliveries = 0
        self.seen: set[tuple[str, int]] = set()
        self.delivery_ms: list[float] = []
        self.acks: list[tuple[float, float]] = []  # (acknowledged at, ms)
        self.errors: dict[str, int] = {}
        self.waiting: dict[str, asyncio.Future] = {}
        self.ws = None

    async def connect(self):
        ws_url = self.url.replace("http", "ws", 1) + f"/ws/{self.member['user_id']}?token={self.member['token']}"
        self.ws = await websockets.connect(ws_url, max_queue=None, ping_interval=None, compression=None)
        frame = json.loads(await self.ws.recv())
        if frame.get("type") != "connected":
            raise RuntimeError(f"not connected: {frame}")

    async def read(self):
        try:
            async for text in self.ws:
                frame = json.loads(text)
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
        except websockets.ConnectionClosed:
            pass

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
                await self.ws.send(json.dumps({"type": "send_message", "group_id": self.member["group_id"],
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
