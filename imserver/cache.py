"""Django's Redis cache (the send-rate counters) with one connection pool and one client per process.

Django makes a cache object per thread or async context, each with its own pool, and a new Redis client for
every call: under ASGI that is a new Redis connection for every request (Django ticket #35651), and building
a client costs more than the call. Redis clients are thread-safe; these are shared."""
import threading

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


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
                    pool = self._pool_class.from_url(server, **self._pool_options)
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
