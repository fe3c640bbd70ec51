"""Django's Redis cache (the send-rate counters) with one connection pool and one client per process, and the
connection pools of every Redis client of the server, which follow a Sentinel failover when REDIS_SENTINELS is set.

Django makes a cache object per thread or async context, each with its own pool, and a new Redis client for
every call: under ASGI that is a new Redis connection for every request (Django ticket #35651), and building
a client costs more than the call. Redis clients are thread-safe; these are shared (imserver.patches)."""
import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.connection
import redis.sentinel
from django.conf import settings

from imserver.patches import SharedClientRedisCache, SharedRedisCacheClient


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


class SentinelRedisCacheClient(SharedRedisCacheClient):
    """The shared client (imserver.patches), its pool following a Sentinel failover when REDIS_SENTINELS is set."""

    def pool_new(self, server, options):
        return redis_connection_pool(server, **options) if settings.REDIS_SENTINELS else \
            super().pool_new(server, options)


class RedisCache(SharedClientRedisCache):
    client_class = SentinelRedisCacheClient
