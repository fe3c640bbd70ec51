"""The channel layer against a real Redis: a process's concurrent publishes leave in batches, in their order, each
delivered once, and each one whose batch Redis never took fails."""
import asyncio
import inspect
import socket
import uuid

import pytest
import redis
from channels_redis import pubsub
from django.conf import settings

from imserver.channel_layer import BatchedPubSubChannelLayer
from imserver.redisconn import KeptConnection

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")


def test_what_the_batched_layer_relies_on_in_channels_redis():
    assert "self._layers[loop] = layer" in inspect.getsource(pubsub.RedisPubSubChannelLayer._get_layer)
    assert "self._shards = [" in inspect.getsource(pubsub.RedisPubSubLoopLayer.__init__)
    shard = inspect.getsource(pubsub.RedisSingleShardConnection)
    for part in ("self.host = host", "self._lock = asyncio.Lock()", "def _ensure_redis(self):",
                 "self._redis = aioredis.Redis(", "async with self._lock:"):
        assert part in shard, part


def _layer(hosts=None):
    return BatchedPubSubChannelLayer(hosts=hosts or [settings.REDIS_URL], prefix=f"t{uuid.uuid4().hex[:8]}")


def test_concurrent_publishes_are_delivered_in_order_once_each_in_fewer_round_trips(monkeypatch):
    round_trips = []
    exchange = KeptConnection.exchange

    async def counted(self, commands, *args, **kwargs):
        round_trips.append(len(commands))
        return await exchange(self, commands, *args, **kwargs)

    monkeypatch.setattr(KeptConnection, "exchange", counted)

    async def scenario():
        layer = _layer()
        channel = await layer.new_channel()
        await layer.group_add("care", channel)
        await asyncio.wait_for(asyncio.gather(*(layer.group_send("care", {"type": "chat.message", "n": n})
                                                for n in range(200))), 10)
        got = [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(200)]
        with pytest.raises(asyncio.TimeoutError):  # nothing twice
            await asyncio.wait_for(layer.receive(channel), 0.3)
        await layer.flush()
        return got

    assert asyncio.run(scenario()) == list(range(200))
    assert sum(round_trips) == 200 and len(round_trips) < 200, round_trips


def test_a_publish_connection_redis_dropped_is_replaced_and_each_message_arrives_once():
    async def scenario():
        layer = _layer()
        channel = await layer.new_channel()
        await layer.group_add("care", channel)
        await layer.group_send("care", {"type": "chat.message", "n": 0})
        kept = layer._get_layer()._shards[0]._kept  # the shard's own publishing connection: Redis drops it
        await kept.conn.send_command("CLIENT", "ID")
        redis.Redis.from_url(settings.REDIS_URL).client_kill_filter(_id=await kept.conn.read_response())
        await asyncio.wait_for(layer.group_send("care", {"type": "chat.message", "n": 1}), 10)
        got = [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(2)]
        with pytest.raises(asyncio.TimeoutError):  # nothing twice
            await asyncio.wait_for(layer.receive(channel), 0.3)
        await layer.flush()
        return got

    assert asyncio.run(scenario()) == [0, 1]


def test_publishes_redis_never_took_fail():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario():
        layer = _layer([f"redis://127.0.0.1:{port}/0"])
        sends = asyncio.gather(*(layer.group_send("care", {"type": "chat.message", "n": n}) for n in range(5)),
                               return_exceptions=True)
        return await asyncio.wait_for(sends, 10)  # each fails; none waits for ever

    results = asyncio.run(scenario())
    assert len(results) == 5 and all(isinstance(r, Exception) for r in results), results


def test_publishes_waiting_when_the_sender_is_cancelled_fail_instead_of_waiting_for_ever():
    async def scenario():
        layer = _layer()
        sends = [asyncio.ensure_future(layer.group_send("care", {"type": "chat.message", "n": n})) for n in range(50)]
        await asyncio.sleep(0)  # each is queued, and the shard's sender made but not yet run
        shard = layer._get_layer()._shards[0]
        shard._sender.cancel()  # as when the loop closes
        results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 10)
        await layer.flush()
        return results

    results = asyncio.run(scenario())
    assert len(results) == 50 and all(isinstance(r, ConnectionError) for r in results), results
