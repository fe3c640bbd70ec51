"""A Celery worker's pushes: handed to the process's own event loop without waiting, they reach the group's
connections in the order they were made, and a worker about to exit waits for the ones still on their way."""
import asyncio
import threading

import pytest
from channels.layers import get_channel_layer
from django.conf import settings

from imserver import publish

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")


def test_a_workers_pushes_arrive_in_order_and_the_drain_waits_for_them(monkeypatch):
    monkeypatch.setattr(publish, "_own_loop_wanted", True)  # as the worker_init signal sets it
    layer = get_channel_layer()

    async def scenario():
        channel = await layer.new_channel()
        await layer.group_add(publish.group_channel("g-worker"), channel)

        def task():  # a task's thread: it goes on as soon as each push is handed over
            for n in range(100):
                publish.group_event("g-worker", {"type": "ai_delta", "index": n})
            drained.append(publish.pushes_drain(timeout=5))

        drained: list[int] = []
        worker = threading.Thread(target=task)
        worker.start()
        got = [(await asyncio.wait_for(layer.receive(channel), 5))["frame"]["index"] for _ in range(100)]
        await asyncio.get_running_loop().run_in_executor(None, worker.join)
        await layer.group_discard(publish.group_channel("g-worker"), channel)
        return got, drained

    got, drained = asyncio.run(scenario())
    assert got == list(range(100))
    assert drained == [0] and not publish._handed  # nothing left unsent, nothing kept
