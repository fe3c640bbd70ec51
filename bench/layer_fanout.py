"""Compare channels-redis's core layer, its pub/sub layer and the deployment's (the pub/sub layer with batched
publishes, imserver.channel_layer) for this server's fan-out.

    python bench/layer_fanout.py --redis redis://127.0.0.1:6379/0 --groups 100 --members 5 --messages 2000

Every group has `members` receiving channels (one per connection); messages go to random groups at full
speed from one sender task, as message_send's on-commit push does. Prints, per layer: messages/s sent,
deliveries/s, and delivery latency percentiles (send call to receive, same clock).
"""
import argparse
import asyncio
import json
import random
import statistics
import time

from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from imserver.channel_layer import BatchedPubSubChannelLayer


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] * 1000


async def run(layer, groups: int, members: int, messages: int, concurrency: int) -> dict:
    channels = {}
    for g in range(groups):
        for m in range(members):
            name = await layer.new_channel("bench.")
            await layer.group_add(f"bench-g{g}", name)
            channels[name] = g
    latencies, expected = [], messages * members
    done = asyncio.Event()

    async def receiver(name):
        while True:
            event = await layer.receive(name)
            latencies.append(time.perf_counter() - event["t"])
            if len(latencies) >= expected:
                done.set()

    tasks = [asyncio.create_task(receiver(name)) for name in channels]
    await asyncio.sleep(0.5)
    start = time.perf_counter()
    sem = asyncio.Semaphore(concurrency)

    async def send(i):
        async with sem:
            await layer.group_send(f"bench-g{random.randrange(groups)}", {"type": "chat.message", "t": time.perf_counter(),
                                                                          "frame": {"seq": i, "content": "x" * 100}})

    await asyncio.gather(*(send(i) for i in range(messages)))
    sent_at = time.perf_counter()
    try:
        await asyncio.wait_for(done.wait(), timeout=60)
    except asyncio.TimeoutError:
        pass
    elapsed = time.perf_counter() - start
    for t in tasks:
        t.cancel()
    for g in range(groups):
        for name, gg in channels.items():
            if gg == g:
                await layer.group_discard(f"bench-g{g}", name)
    return {
        "sent_per_s": round(messages / (sent_at - start)),
        "deliveries_per_s": round(len(latencies) / elapsed),
        "delivered": f"{len(latencies)}/{expected}",
        "p50_ms": round(pct(latencies, 50), 1),
        "p99_ms": round(pct(latencies, 99), 1),
        "mean_ms": round(statistics.mean(latencies) * 1000, 1),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20, help="sends in flight, like server threads")
    args = parser.parse_args()
    results = {}
    for name, factory in (
        ("core", lambda: RedisChannelLayer(hosts=[args.redis], prefix="benchcore", capacity=10000)),
        ("pubsub", lambda: RedisPubSubChannelLayer(hosts=[args.redis], prefix="benchpubsub")),
        ("pubsub, batched", lambda: BatchedPubSubChannelLayer(hosts=[args.redis], prefix="benchbatched")),
    ):
        results[name] = asyncio.run(run(factory(), args.groups, args.members, args.messages, args.concurrency))
        print(name, json.dumps(results[name]))


if __name__ == "__main__":
    main()
