"""A small WebSocket client for end-to-end tests, built on the `websockets` library."""
import asyncio
import json

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


class Client:
    """One user's connection; keeps every frame it receives, and the messages it has seen by seq."""

    def __init__(self, name: str, user_id: str, token: str):
        self.name, self.user_id, self.token = name, user_id, token
        self.frames: list[dict] = []
        self.history: dict[str, dict[int, dict]] = {}  # group_id -> seq -> message, deduplicated
        self.push_seqs: list[tuple[str, int]] = []  # (group, seq) of every push on every connection
        self.connection_pushes: list[list[tuple[str, int]]] = []
        self.ws = None
        self.reader = None
        self.closed = asyncio.Event()
        self.close_code: int | None = None  # the code the server closed the last connection with

    async def connect(self, ws_base: str):
        self.closed = asyncio.Event()
        self.close_code = None
        self.ws = await connect(f"{ws_base}/ws/{self.user_id}?token={self.token}", open_timeout=10)
        self.connection_pushes.append([])
        self.reader = asyncio.create_task(self._read(self.ws, self.connection_pushes[-1]))
        return await self._connected_or_closed()

    async def _connected_or_closed(self, timeout: float = 10.0) -> dict | None:
        """The `connected` frame of this connection, or None when the server closed it instead (a refusal)."""
        start = len(self.frames)
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            hello = next((f for f in self.frames[start:] if f["type"] == "connected"), None)
            if hello is not None or self.closed.is_set():
                return hello
            await asyncio.sleep(0.02)
        raise AssertionError(f"{self.name}: neither connected nor closed in {timeout}s")

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        """The close code, once the server has closed the connection."""
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code

    async def _read(self, ws, pushes):
        try:
            async for raw in ws:
                frame = json.loads(raw)
                self.frames.append(frame)
                if frame["type"] in ("message", "ai_reply"):
                    pushes.append((frame["group_id"], frame["seq"]))
                    self.push_seqs.append((frame["group_id"], frame["seq"]))
                    self._remember(frame)
                elif frame["type"] == "sync_result":
                    for message in frame["messages"]:
                        self._remember(message)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            self.closed.set()

    def _remember(self, message):
        self.history.setdefault(message["group_id"], {})[message["seq"]] = message

    def last_seq(self, group_id: str) -> int:
        """The highest seq seen with nothing missing below it."""
        seen, seq = self.history.get(group_id, {}), 0
        while seq + 1 in seen:
            seq += 1
        return seq

    async def send(self, frame: dict):
        await self.ws.send(json.dumps(frame))

    async def wait_for(self, predicate, timeout: float = 10.0, start: int = 0):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for frame in self.frames[start:]:
                if predicate(frame):
                    return frame
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.name}: no matching frame in {timeout}s; last: {self.frames[-3:]}")
            await asyncio.sleep(0.02)

    async def sync_all(self, group_id: str, timeout: float = 10.0):
        """The reconnect recipe: sync from the last seq seen until nothing more is missing."""
        while True:
            mark = len(self.frames)
            await self.send({"type": "sync", "group_id": group_id, "after_seq": self.last_seq(group_id)})
            result = await self.wait_for(lambda f: f["type"] == "sync_result" and f["group_id"] == group_id,
                                         timeout, start=mark)
            if not result["has_more"]:
                return

    async def close(self):
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.wait([self.reader], timeout=5)


async def stay_connected(client: Client, ws_base: str, group_ids: list[str], stop: asyncio.Event,
                         timeout: float = 30.0):
    """The reconnect recipe, for as long as `stop` is not set: whenever the server closes the connection, note the
    close code in `client.close_codes`, connect again (through a proxy: to whichever server answers) and `sync`
    every group from the last seq seen."""
    client.close_codes = getattr(client, "close_codes", [])
    while not stop.is_set():
        closed = asyncio.create_task(client.closed.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([closed, stopping], return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        stopping.cancel()
        if stop.is_set() and not client.closed.is_set():
            return
        client.close_codes.append(client.close_code)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                if await client.connect(ws_base) is not None:
                    break
            except (OSError, ConnectionClosed, InvalidStatus, TimeoutError):
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{client.name}: could not reconnect in {timeout} s")
            await asyncio.sleep(0.2)
        try:
            for group_id in group_ids:
                await client.sync_all(group_id)
        except (ConnectionClosed, AssertionError):
            if not client.closed.is_set():
                raise  # closed again meanwhile: the next round reconnects and syncs
