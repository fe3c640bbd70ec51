"""Django's Redis cache (the send-rate counters) with one connection pool and one client per process, and the
connection pools of every Redis client of the server, which follow a Sentinel failover when REDIS_SENTINELS is set.

Django makes a cache object per thread or async context, each with its own pool, and a new Redis client for
every call: under ASGI that is a new Redis connection for every request (Django ticket #35651), and building
a client costs more than the call. Redis clients are thread-safe; these are shared."""
import threading

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.connection
import redis.sentinel
from django.conf import settings
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


def redis_connection_pool(url: str, *, asynchronous: bool = False, **options):
    """A connection pool for the Redis of `url`; with REDIS_SENTINELS, for the master the Sentinels name at each
    connect (`url` then gives only the db and password), so that a failover needs no restart."""
    if not settings.REDIS_SENTINELS:
        return (redis.asyncio.ConnectionPool if asynchronous else redis.ConnectionPool).from_url(url, **options)
    sentinel = redis.asyncio.sentinel if asynchronous else redis.sentinel
    master = {key: value for key, value in redis.connection.parse_url(url).items()
              if key in ("db", "username", "password")}
    return sentinel.SentinelConnectionPool(
        settings.REDIS_SENTINEL_MASTER,
        sentinel.Sentinel(settings.REDIS_SENTINEL_HOSTS, sentinel_kwargs=settings.REDIS_SENTINEL_KWARGS),
        **master, **options)


class SharedRedisCacheClient(RedisCacheClient):
    _shared: dict = {}  # (server, options) -> (pool, client), for the whole process
    _lock = threading.Lock()

    def _shared_for(self, write):
        server = self._servers[self._get_connection_pool_index(write)]
        key = (server, repr(sorted(self._pool_options.items())))
        shared = self._shared.get(key)
        if shared is None:
            with self._lock:
                shared = self._shared.get(key)
                if shared is None:
                    pool = redis_connection_pool(server, **self._pool_options) if settings.REDIS_SENTINELS \
                        else self._pool_class.from_url(server, **self._pool_options)
                    shared = self._shared[key] = (pool, self._client(connection_pool=pool))
        return shared

    def _get_connection_pool(self, write):
        return self._shared_for(write)[0]

    def get_client(self, key=None, *, write=False):
        return self._shared_for(write)[1]


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = SharedRedisCacheClient
