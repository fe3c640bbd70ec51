"""The cache behind the send-rate counters shares one Redis pool and client per process: a request does not open
a Redis connection of its own (Django makes a cache object per thread and async context, so per request)."""
import threading

from imserver.cache import RedisCache
from imserver.patches import redis_cache_client

LOCATION = "redis://127.0.0.1:1/0"  # never connected to: pools and clients connect on first use
OPTIONS = {"OPTIONS": {"socket_timeout": 1.0}}


def test_cache_objects_of_every_thread_share_one_redis_client():
    clients = []

    def in_a_thread():
        clients.append(redis_cache_client(RedisCache(LOCATION, OPTIONS), write=True))

    threads = [threading.Thread(target=in_a_thread) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    clients.append(redis_cache_client(RedisCache(LOCATION, OPTIONS)))

    assert len({id(client) for client in clients}) == 1
    assert len({id(client.connection_pool) for client in clients}) == 1


def test_other_options_get_a_pool_of_their_own():
    one = redis_cache_client(RedisCache(LOCATION, OPTIONS))
    other = redis_cache_client(RedisCache(LOCATION, {"OPTIONS": {"socket_timeout": 2.0}}))
    assert one is not other and one.connection_pool is not other.connection_pool
