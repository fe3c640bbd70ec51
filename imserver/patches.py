"""Every override that touches a private API of Django, channels or psycopg-pool, in one place.

Each says what it buys; tests/core/test_framework_patches.py fails, naming the pinned version, when an upgrade
changes what one of them touches. Anywhere else the code uses public APIs only, and reaches these through the
names below. (Pins: requirements.txt.)"""
import threading
from collections.abc import Callable

from channels.consumer import get_handler_name
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from django.db import close_old_connections, connections, router
from django.db.models import QuerySet
from django.db.transaction import TransactionManagementError
from kombu.transport import redis as kombu_redis

# --- Django's ASGI handler: one thread hop per HTTP request ---------------------------------------------------


class SyncMiddlewareChainMixin:
    """For an ASGIHandler subclass: the middleware chain built sync, as a whole adapted to async once.

    Django builds it async and adapts each sync middleware and the view on its own, so a request went from the
    event loop to a thread for the middleware, back to the loop to resolve the URL, and to the thread again for
    the view; here the middleware and the view run in one go. With the consumer's dispatch below: HTTP send
    10.2 → 8.2 ms of server CPU per message, WebSocket send 4.5 → 3.8 ms (README, Performance).

    Private: `BaseHandler._middleware_chain`, which `load_middleware` sets."""

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)
        self._middleware_chain = self.adapt_method_mode(True, self._middleware_chain, False)


# --- channels: no thread hop per channel-layer event --------------------------------------------------------


class DispatchWithoutConnectionCloseMixin:
    """For an AsyncConsumer subclass: `AsyncConsumer.dispatch` copied without its `aclose_old_connections()`, a
    thread hop to close stale database connections before every event (each pushed message, for each
    connection). Only for a consumer that reaches the database through database_sync_to_async alone, which closes
    them in its own thread. Its figure is shared with the middleware chain above (README, Performance).

    Copied: the test compares `AsyncConsumer.dispatch`'s source with the one this copy was made from."""

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


def thread_handler_closing_in_pools(thread_handler):
    """`DatabaseSyncToAsync.thread_handler` that also closes a thread pool's connections when channels' test
    communicator has turned that closing off (to spare the test's own): a send running in a pool thread
    (thread_sensitive=False) gives its connection back to the pool, as outside tests. For tests/conftest.py.

    Private: `SyncToAsync._thread_sensitive`, and `thread_handler(self, loop, *args, **kwargs)` itself."""

    def closing_thread_handler(self, loop, *args, **kwargs):
        try:
            return thread_handler(self, loop, *args, **kwargs)
        finally:
            if not self._thread_sensitive:
                close_old_connections()

    return closing_thread_handler


# --- Django's Redis cache: one pool and one client per process ----------------------------------------------


class SharedRedisCacheClient(RedisCacheClient):
    """Django's Redis cache client, sharing one connection pool and one redis-py client per process.

    Django makes a cache object per thread or async context, each with its own pool, and a new Redis client for
    every call: under ASGI that is a new Redis connection for every request (Django ticket #35651), and building
    a client costs more than the call. With request threads reused: HTTP send 7.2 → 6.1–6.3 ms of server CPU
    per message, WebSocket send 3.4 → 3.25 ms (README, Performance).

    Private: `_servers`, `_get_connection_pool_index`, `_pool_options`, `_pool_class`, `_client`,
    `_get_connection_pool`."""

    _shared: dict = {}  # (server, options) -> (pool, client), for the whole process
    _shared_lock = threading.Lock()

    def pool_new(self, server: str, options: dict):
        """A new connection pool for `server`; a subclass may build it otherwise (imserver.cache: Sentinel)."""
        return self._pool_class.from_url(server, **options)

    def _shared_for(self, write):
        server = self._servers[self._get_connection_pool_index(write)]
        key = (server, repr(sorted(self._pool_options.items())))
        shared = self._shared.get(key)
        if shared is None:
            with self._shared_lock:
                shared = self._shared.get(key)
                if shared is None:
                    pool = self.pool_new(server, self._pool_options)
                    shared = self._shared[key] = (pool, self._client(connection_pool=pool))
        return shared

    def _get_connection_pool(self, write):
        return self._shared_for(write)[0]

    def get_client(self, key=None, *, write=False):
        return self._shared_for(write)[1]


class SharedClientRedisCache(DjangoRedisCache):
    """Django's RedisCache with the client class of `client_class`. Private: `RedisCache._class`."""

    client_class = SharedRedisCacheClient

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = self.client_class


def redis_cache_client(cache: DjangoRedisCache, key: str | None = None, *, write: bool = False):
    """The redis-py client behind a Django RedisCache, for what the cache API lacks: the send-rate check as one
    Redis script (one of the changes of the README's Performance row that took an HTTP send from 13.3 to 10.2 ms
    of server CPU per message, a WebSocket send from 6.1 to 4.5), and the tests' removal of the counters.
    Private: `RedisCache._cache`."""
    return cache._cache.get_client(key, write=write)


# --- kombu's Redis transport: one client per channel ---------------------------------------------------------


class SharedClientChannelMixin:
    """For a kombu Redis channel: one redis-py client for its synchronous commands, made once per connection pool.

    kombu builds a new client (175 µs of CPU on the 2-core bench machine) for every command it sends outside its
    event loop: each task published, and in a worker each task's bookkeeping as it is received and again when it
    is acknowledged. A client over a pool is safe to share between threads. In the `ai` benchmark this was 8.6 %
    of a worker's CPU (README, Performance).

    Private: `Channel._create_client(asynchronous)`, `Channel.pool`."""

    def _create_client(self, asynchronous=False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool  # made again after a connection error: a client over a pool that is gone is not reused
        shared = self.__dict__.get("_shared_client")
        if shared is None or shared[0] is not pool:
            shared = self.__dict__["_shared_client"] = (pool, super()._create_client(asynchronous=False))
        return shared[1]


class SharedClientRedisChannel(SharedClientChannelMixin, kombu_redis.Channel):
    pass


class SharedClientSentinelChannel(SharedClientChannelMixin, kombu_redis.SentinelChannel):
    pass


class SharedClientRedisTransport(kombu_redis.Transport):
    """kombu's redis:// transport with SharedClientRedisChannel (imserver.celery installs it)."""

    Channel = SharedClientRedisChannel


class SharedClientSentinelTransport(kombu_redis.SentinelTransport):
    """kombu's sentinel:// transport with SharedClientSentinelChannel (imserver.celery installs it)."""

    Channel = SharedClientSentinelChannel


# --- psycopg-pool: fail the waiting requests at once when the database is unreachable ------------------------


async def async_pool_waiting_fail(pool, exc: Exception) -> None:
    """pool_waiting_fail for psycopg-pool's AsyncConnectionPool (the send on the event loop: imserver.asyncdb).
    Private: `AsyncConnectionPool._lock`, `AsyncConnectionPool._waiting` and its clients' `fail()`."""
    async with pool._lock:
        waiting = list(pool._waiting)
        pool._waiting.clear()
    for client in waiting:
        await client.fail(exc)


def pool_waiting_fail(pool, exc: Exception) -> None:
    """Fail every request waiting for a connection of `pool` with `exc`, the way the pool's own close() fails
    them: when the pool gives up connecting, they answer 503 now instead of after DB_POOL_TIMEOUT (10 s by
    default). Private: `ConnectionPool._lock`, `ConnectionPool._waiting` and its clients' `fail()`."""
    with pool._lock:
        waiting = list(pool._waiting)
        pool._waiting.clear()
    for client in waiting:
        client.fail(exc)


def pool_check_set(pool, check) -> None:
    """Have `pool` run `check` before it lends a connection, instead of the check Django built it with (with
    CONN_HEALTH_CHECKS, ConnectionPool.check_connection: a round trip on every checkout), which its options cannot
    replace. Private: `ConnectionPool._check`, which `_check_connection` calls."""
    if pool._check is not check:
        pool._check = check


# --- Django's ORM: a hot read built and compiled once ---------------------------------------------------------


class CompiledRead:
    """A read that a hot path runs for every message, built and compiled once per thread and database, then run
    again with other values. Django builds and compiles a queryset afresh every time: on the 2-core bench machine
    the AI task's read of a record with its group, message and sender costs 2.55 ms of CPU, 0.98 ms compiled
    once; running its SQL alone, 0.50 ms (README, Performance).

    `build(**samples)` returns the queryset, sliced if it is to return one row. Each sample is a value that no
    other parameter of the statement has (an unlikely number or string), of a type the database takes as it is
    (int, str): its places among the compiled statement's parameters are where each run's value goes. A value
    that would change the statement's shape (None, a list) cannot be passed; `shape()`, when given, returns what
    else the statement depends on (a setting the queryset reads, such as a LIMIT), and each shape compiles apart.
    Results are those of the queryset
    (instances with what select_related joined, or values): Django's own iterables build them.

    Private: `Query.get_compiler` (overridden on the compiled query, to return its compiler), `SQLCompiler.as_sql`
    (overridden on the compiler, to return the statement with this run's values), `QuerySet._iterable_class`,
    `_fields`, `_for_write`, `_prefetch_related_lookups`."""

    def __init__(self, build: Callable[..., QuerySet], *, shape: Callable[[], object] | None = None, **samples):
        self.build, self.shape, self.samples = build, shape, samples
        self._model = None  # (model, for_write): what the router is asked about on every run
        self._local = threading.local()  # this thread's {(alias, shape): (connection, queryset, compiler, ...)}

    def _compile(self, alias: str) -> tuple:
        queryset = self.build(**self.samples).using(alias)
        if queryset._prefetch_related_lookups:
            raise ValueError("a compiled read cannot prefetch")
        compiler = queryset.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        places = [(name, [i for i, param in enumerate(params) if param == sample])
                  for name, sample in self.samples.items()]
        missing = [name for name, found in places if not found]
        if missing:
            raise ValueError(f"samples not among the statement's parameters: {', '.join(missing)}")
        queryset.query.get_compiler = lambda *args, **kwargs: compiler
        return connections[alias], queryset, compiler, sql, params, places

    def all(self, **values) -> list:
        """The queryset's results with these values in place of the samples."""
        if values.keys() != self.samples.keys() or any(value is None or isinstance(value, (list, tuple, set, dict))
                                                     for value in values.values()):
            raise ValueError(f"a compiled read takes one plain value for each of: {', '.join(self.samples)}")
        if self._model is None:
            built = self.build(**self.samples)
            self._model = built.model, built._for_write
        model, for_write = self._model
        alias = router.db_for_write(model) if for_write else router.db_for_read(model)
        key = (alias, self.shape() if self.shape is not None else None)
        compiled = self._local.__dict__.get(key)
        if compiled is None or compiled[0] is not connections[alias]:
            compiled = self._local.__dict__[key] = self._compile(alias)
        connection, template, compiler, sql, params, places = compiled
        if template.query.select_for_update and connection.get_autocommit():  # as Django's compiler checks
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        bound = list(params)
        for name, found in places:
            for i in found:
                bound[i] = values[name]
        bound = tuple(bound)
        compiler.as_sql = lambda *args, **kwargs: (sql, bound)
        queryset = QuerySet(model=template.model, query=template.query, using=alias)
        queryset._iterable_class, queryset._fields = template._iterable_class, template._fields
        return list(queryset)

    def first(self, **values):
        """The first result, or None."""
        found = self.all(**values)
        return found[0] if found else None


# --- DRF: the Django request under a DRF one ------------------------------------------------------------------


def django_request(request):
    """The Django HttpRequest a DRF Request wraps (its attributes are proxied; its class is not).
    Private: `rest_framework.request.Request._request`."""
    return request._request
