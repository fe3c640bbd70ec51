"""The channel layer: channels_redis's pub/sub layer, its publishes of one process sent to Redis in batches.

channels_redis publishes one message per round trip, each under its shard's lock: under load the pushes of a
process queue behind that lock, one event-loop turn or more each, and trail their commits by seconds (a
connection then finds a gap, another process's push overtaking, and reads it from the database). Here the
publishes waiting for a shard go out together, in their order, in one write on a connection the shard keeps for them
(imserver.redisconn: no pool checkout, retry wrapper or task per write): one round trip for all of them. Each
group_send still returns once Redis has taken its message, and fails if it did not.

The internals this relies on are checked by tests/realtime/test_channel_layer.py."""
import asyncio

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisSingleShardConnection
from django.conf import settings

from imserver.redisconn import KeptConnection


class BatchedPublishShard(RedisSingleShardConnection):
    """A shard whose publishes queue up while one batch is in flight, and leave together after it."""

    def __init__(self, host, channel_layer):
        super().__init__(host, channel_layer)
        self._waiting: list[tuple[str, bytes, asyncio.Future]] = []
        self._sending: list[tuple[str, bytes, asyncio.Future]] = []
        self._sender: asyncio.Task | None = None
        self._kept: KeptConnection | None = None  # made from the shard's pool, anew when the shard makes a new one

    async def publish(self, channel, message):
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((channel, message, done))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_waiting())
            self._sender.add_done_callback(self._sender_stopped)
        await done

    async def _send_waiting(self):
        while self._waiting:
            self._sending, self._waiting = self._waiting, []
            try:
                async with self._lock:  # as channels_redis: ordered with the shard's subscribes
                    self._ensure_redis()
                    if self._kept is None or self._kept.pool is not self._redis.connection_pool:
                        await self._drop_kept()
                        self._kept = KeptConnection(self._redis.connection_pool, "publish")
                    replies = await self._kept.exchange([("PUBLISH", channel, message)
                                                         for channel, message, _ in self._sending],
                                                        settings.REDIS_SOCKET_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - each caller gets the failure (publish logs it)
                replies = [exc] * len(self._sending)
            for (_, _, done), reply in zip(self._sending, replies):
                _settle_one(done, reply if isinstance(reply, Exception) else None)
            self._sending = []

    async def flush(self):
        await super().flush()
        await self._drop_kept()

    async def _drop_kept(self) -> None:
        kept, self._kept = self._kept, None
        if kept is not None:
            await kept.drop()

    def _sender_stopped(self, sender: asyncio.Task) -> None:
        """Cancelled (its loop closing), even before its first step: what it did not send fails, none waits."""
        if sender.cancelled():
            unsent, self._sending, self._waiting = self._sending + self._waiting, [], []
            _settle(unsent, ConnectionError("not published: the layer's sender was cancelled"))


def _settle(batch, exc: Exception | None) -> None:
    for _, _, done in batch:
        _settle_one(done, exc)


def _settle_one(done: asyncio.Future, exc: Exception | None) -> None:
    if not done.done():
        if exc is None:
            done.set_result(None)
        else:
            done.set_exception(exc)


class BatchedPubSubChannelLayer(RedisPubSubChannelLayer):
    """RedisPubSubChannelLayer (the same configuration) with BatchedPublishShard for its shards."""

    def _get_layer(self):
        layer = super()._get_layer()
        if not getattr(layer, "batched_publish", False):  # a loop's layer, just made: nothing used its shards yet
            layer._shards = [BatchedPublishShard(shard.host, layer) for shard in layer._shards]
            layer.batched_publish = True
        return layer
