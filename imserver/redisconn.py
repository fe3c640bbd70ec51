"""One Redis connection kept by one event loop for a hot path's batches of commands (the send rate's scripts, the
channel layer's publishes).

Through redis-py's client each batch checked a connection out of the pool and back, ran in its retry wrapper, and
wrote under a deadline of its own: redis-py 8 gives every connection a socket timeout (5 s by default), and on
Python 3.11 asyncio.wait_for runs each write as a task of its own. Here the connection is made from the pool's
settings and held by the caller's loop alone, a batch is one write and its replies under one deadline, and a
connection Redis dropped is replaced and what it did not answer sent once more, as redis-py's retry did."""
import asyncio

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class KeptConnection:
    """A connection made from `pool`'s settings when first needed, and anew after a failure."""

    def __init__(self, pool, what: str):
        self.pool = pool
        self.what = what  # for the timeout's message
        self.conn = None

    async def exchange(self, commands: list[tuple], deadline: float) -> list:
        """Each command's reply, in order: a command's own error (ResponseError) is its reply, the others still
        come. Raises redis's ConnectionError when a fresh connection fails too, its TimeoutError when the whole
        exchange (connecting included) takes more than `deadline` seconds."""
        replies = []
        for attempt in (1, 2):  # a kept connection Redis dropped shows at the write or the read: once more, anew
            conn = self.conn
            if conn is None:
                conn = self.conn = self.pool.make_connection()
                conn.socket_timeout = None  # one deadline below for the whole exchange, not a task per write
            try:
                async with asyncio.timeout(deadline):
                    if not conn.is_connected:
                        # connect() itself: a Sentinel pool's connection asks the Sentinels for the master there,
                        # where a first write would connect to the pool's default address.
                        await conn.connect()
                    await conn.send_packed_command(conn.pack_commands(commands[len(replies):]), check_health=False)
                    while len(replies) < len(commands):
                        try:
                            replies.append(await conn.read_response())
                        except ResponseError as exc:
                            replies.append(exc)
                return replies
            except RedisConnectionError:
                await self.drop()
                if attempt == 2:
                    raise
            except TimeoutError as exc:
                await self.drop()
                raise RedisTimeoutError(f"{self.what} timed out") from exc
            except BaseException:
                await self.drop()
                raise

    async def drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            await conn.disconnect()
