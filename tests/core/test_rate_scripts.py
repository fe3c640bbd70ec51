"""The send rate checked from the server's event loop (imserver.throttling): concurrent checks share a Redis
connection and leave in batches, each still atomic and answered to its own caller, and a connection Redis dropped
is replaced without a check going unanswered."""
import asyncio
import os

import pytest
import redis
from django.conf import settings

from imserver import throttling
from tests.support.live import needs_real_services

pytestmark = [needs_real_services(), pytest.mark.django_db]


def _fresh_loop_run(scenario):
    """Each asyncio.run is a new loop: the module keeps a connection per loop; the test drops it after."""
    async def wrapped():
        try:
            return await scenario()
        finally:
            scripts = throttling._scripts.pop((os.getpid(), asyncio.get_running_loop()), None)
            if scripts is not None:
                await scripts.kept.drop()
            client = throttling._async_clients.pop((os.getpid(), asyncio.get_running_loop()), None)
            if client is not None:
                await client.connection_pool.disconnect()
    return asyncio.run(wrapped())


def test_checks_made_at_once_are_each_counted_once_and_each_answered(db):
    async def scenario():
        # 40 checks of 4 keys in one turn of the loop: the first goes alone, the rest in batches behind it.
        waits = await asyncio.gather(*[throttling.rate_hit_async(f"scripts_{i % 4}", "5/min") for i in range(40)])
        return [[wait for j, wait in enumerate(waits) if j % 4 == key] for key in range(4)]

    for waits in _fresh_loop_run(scenario):
        assert waits[:5] == [None] * 5  # the first five of each key, in the order they were asked
        assert all(0 < wait <= 60 for wait in waits[5:])


def test_a_connection_redis_dropped_is_replaced_and_the_check_still_counts(db, caplog):
    async def scenario():
        assert await throttling.rate_hit_async("scripts_dropped", "2/min") is None
        conn = throttling._loop_scripts().kept.conn  # the loop's own connection: Redis drops it
        await conn.send_command("CLIENT", "ID")
        client_id = await conn.read_response()
        redis.Redis.from_url(settings.REDIS_URL).client_kill_filter(_id=client_id)
        second = await throttling.rate_hit_async("scripts_dropped", "2/min")
        third = await throttling.rate_hit_async("scripts_dropped", "2/min")
        return second, third

    second, third = _fresh_loop_run(scenario)
    assert second is None
    assert third is not None and third > 0  # the second was counted: the third is refused
    assert "rate not checked" not in caplog.text


def test_a_redis_that_stops_answering_delays_a_send_by_the_timeout_only(start_redis, settings, caplog):
    """A limit is a guard, not a part the service needs: past REDIS_SOCKET_TIMEOUT the send goes on unchecked."""
    private = start_redis()
    settings.REDIS_URL, settings.REDIS_SOCKET_TIMEOUT = private.url, 0.5

    async def scenario():
        assert await throttling.rate_hit_async("scripts_paused", "1/min") is None
        redis.Redis.from_url(private.url).client_pause(2000)  # every other client's commands wait 2 s
        unchecked = await throttling.rate_hit_async("scripts_paused", "1/min")
        await asyncio.sleep(2)
        return unchecked, await throttling.rate_hit_async("scripts_paused", "1/min")

    unchecked, after = _fresh_loop_run(scenario)
    # Not refused: had it waited out the pause, the script would have run and refused it (the one is used).
    assert unchecked is None
    assert "rate not checked: TimeoutError" in caplog.text
    assert after is not None and after > 0  # Redis back: the first send still holds the one allowed
