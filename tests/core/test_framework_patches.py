"""The private framework APIs imserver.patches leans on are still there, in the shape each override expects: an
upgrade that changes one fails here, naming the pinned version, instead of in production."""
import hashlib
import inspect
import re
from collections import deque
from importlib.metadata import version
from pathlib import Path

import psycopg
import pytest
from asgiref.sync import SyncToAsync
from channels.consumer import AsyncConsumer
from channels.db import DatabaseSyncToAsync
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from django.core.handlers.base import BaseHandler
from django.db.backends.utils import CursorWrapper
from django.db.models.query import FlatValuesListIterable, ModelIterable, ValuesIterable, ValuesListIterable
from django.db.models.sql.compiler import SQLCompiler
from django.http import HttpRequest
from kombu.transport import redis as kombu_redis
from psycopg_pool import ConnectionPool
from psycopg_pool.pool import WaitingClient
from rest_framework.request import Request

from chat.consumers import ChatConsumer
from imserver import patches
from imserver.asgi import ASGIRequestHandler
from imserver.cache import RedisCache, SentinelRedisCacheClient
from users.models import User

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"
LOCATION = "redis://127.0.0.1:1/0"  # never connected to


def pinned(dist: str) -> str:
    match = re.search(rf"^{re.escape(dist)}(?:\[[^\]]*\])?==(\S+)", REQUIREMENTS.read_text(), re.M | re.I)
    return match.group(1) if match else "?"


def upgrade(dist: str, what: str) -> str:
    return (f"{dist} {version(dist)} (pinned {pinned(dist)}) changed {what}: review the override in "
            f"imserver/patches.py before upgrading")


def source_digest(function) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


# --- Django ---------------------------------------------------------------------------------------------------

def test_django_builds_the_middleware_chain_in_load_middleware():
    assert parameters(BaseHandler.load_middleware) == ["self", "is_async"], \
        upgrade("Django", "BaseHandler.load_middleware(is_async)")
    assert parameters(BaseHandler.adapt_method_mode)[:4] == ["self", "is_async", "method", "method_is_async"], \
        upgrade("Django", "BaseHandler.adapt_method_mode(is_async, method, method_is_async)")
    assert "self._middleware_chain" in inspect.getsource(BaseHandler.load_middleware), \
        upgrade("Django", "BaseHandler._middleware_chain")


def test_the_asgi_handler_runs_one_async_chain_around_sync_middleware():
    handler = ASGIRequestHandler()
    assert isinstance(handler._middleware_chain, SyncToAsync), \
        upgrade("Django", "what load_middleware leaves in BaseHandler._middleware_chain")


def test_django_redis_cache_client_keeps_what_the_shared_client_reads():
    client = RedisCacheClient([LOCATION], socket_timeout=1.0)
    for attribute in ("_servers", "_pool_options", "_pool_class", "_client"):
        assert hasattr(client, attribute), upgrade("Django", f"RedisCacheClient.{attribute}")
    assert client._servers == [LOCATION] and client._pool_options["socket_timeout"] == 1.0, \
        upgrade("Django", "RedisCacheClient._servers/_pool_options")
    assert parameters(RedisCacheClient._get_connection_pool_index) == ["self", "write"], \
        upgrade("Django", "RedisCacheClient._get_connection_pool_index(write)")
    assert parameters(RedisCacheClient._get_connection_pool) == ["self", "write"], \
        upgrade("Django", "RedisCacheClient._get_connection_pool(write)")
    assert parameters(RedisCacheClient.get_client) == ["self", "key", "write"], \
        upgrade("Django", "RedisCacheClient.get_client(key, *, write)")


def test_django_redis_cache_builds_its_client_from_class():
    assert "self._class" in inspect.getsource(DjangoRedisCache), upgrade("Django", "RedisCache._class")
    assert type(RedisCache(LOCATION, {})._cache) is SentinelRedisCacheClient, \
        upgrade("Django", "RedisCache._cache built from RedisCache._class")
    client = patches.redis_cache_client(RedisCache(LOCATION, {}), write=True)
    assert client is patches.redis_cache_client(RedisCache(LOCATION, {})), \
        upgrade("Django", "RedisCache._cache.get_client: one client per process no more")


def test_the_statement_counter_of_the_cost_tests_still_wraps_cursor_execute():
    assert parameters(CursorWrapper._execute) == ["self", "sql", "params", "ignored_wrapper_args"], \
        upgrade("Django", "CursorWrapper._execute (tests/core/test_message_send_cost.py patches it)")


def test_django_querysets_still_run_through_the_compiler_their_query_returns():
    for iterable in (ModelIterable, ValuesIterable, ValuesListIterable, FlatValuesListIterable):
        assert re.search(r"query\.get_compiler\((using=)?(queryset\.)?db\)", inspect.getsource(iterable.__iter__)), \
            upgrade("Django", f"{iterable.__name__}.__iter__ (CompiledRead hands it the compiled compiler)")
    assert "sql, params = self.as_sql()" in inspect.getsource(SQLCompiler.execute_sql), \
        upgrade("Django", "SQLCompiler.execute_sql (CompiledRead overrides as_sql)")
    queryset = User.objects.values_list("pk", flat=True)
    assert (queryset._iterable_class, queryset._fields, queryset._for_write, queryset._prefetch_related_lookups) \
        == (FlatValuesListIterable, ("pk",), False, ()), upgrade("Django", "QuerySet's private attributes")
    assert User.objects.select_for_update()._for_write, upgrade("Django", "select_for_update's _for_write")


# --- kombu ----------------------------------------------------------------------------------------------------

def test_kombu_redis_channels_still_make_their_clients_in_create_client():
    for channel in (kombu_redis.Channel, kombu_redis.SentinelChannel):
        assert parameters(channel._create_client) == ["self", "asynchronous"], \
            upgrade("kombu", f"{channel.__name__}._create_client(asynchronous)")
    assert "self._create_client()" in inspect.getsource(kombu_redis.Channel.conn_or_acquire), \
        upgrade("kombu", "Channel.conn_or_acquire (SharedClientChannelMixin gives it one client)")
    assert isinstance(inspect.getattr_static(kombu_redis.Channel, "pool"), property), upgrade("kombu", "Channel.pool")
    assert (kombu_redis.Transport.Channel, kombu_redis.SentinelTransport.Channel) == (
        kombu_redis.Channel, kombu_redis.SentinelChannel), upgrade("kombu", "the Redis transports' Channel")


# --- channels and asgiref -------------------------------------------------------------------------------------

# AsyncConsumer.dispatch as of channels 4.3.2, which DispatchWithoutConnectionCloseMixin copies less one line.
DISPATCH_DIGEST = "39f34e7d4fb0f6552de4ade665b943fe78137379702af6b58c79a14c49a75520"


def test_channels_dispatch_is_the_one_the_consumer_copied():
    assert source_digest(AsyncConsumer.dispatch) == DISPATCH_DIGEST, \
        upgrade("channels", "AsyncConsumer.dispatch, copied by DispatchWithoutConnectionCloseMixin")
    assert ChatConsumer.dispatch is patches.DispatchWithoutConnectionCloseMixin.dispatch


def test_channels_thread_handler_is_still_wrappable():
    assert parameters(DatabaseSyncToAsync.thread_handler) == ["self", "loop", "args", "kwargs"], \
        upgrade("channels", "DatabaseSyncToAsync.thread_handler(loop, *args, **kwargs)")
    assert SyncToAsync(print, thread_sensitive=False)._thread_sensitive is False, \
        upgrade("asgiref", "SyncToAsync._thread_sensitive")


# --- psycopg-pool ---------------------------------------------------------------------------------------------

def test_psycopg_pool_queue_can_be_failed_at_once():
    pool = ConnectionPool("dbname=none", open=False)
    assert hasattr(pool._lock, "__enter__") and isinstance(pool._waiting, deque), \
        upgrade("psycopg-pool", "ConnectionPool._lock/_waiting")
    waiting = WaitingClient()
    pool._waiting.append(waiting)
    patches.pool_waiting_fail(pool, psycopg.OperationalError("away"))
    assert not pool._waiting, upgrade("psycopg-pool", "ConnectionPool._waiting")
    with pytest.raises(psycopg.OperationalError, match="away"):
        waiting.wait(timeout=0.1)


def test_psycopg_pool_check_can_be_replaced():
    pool = ConnectionPool("dbname=none", open=False, check=ConnectionPool.check_connection)
    assert pool._check is ConnectionPool.check_connection, upgrade("psycopg-pool", "ConnectionPool._check")
    checked = []
    patches.pool_check_set(pool, checked.append)
    pool._check_connection("a connection")
    assert checked == ["a connection"], upgrade("psycopg-pool", "ConnectionPool._check_connection")


def test_psycopg_async_pool_queue_can_be_failed_at_once():
    import asyncio

    from psycopg_pool import AsyncConnectionPool
    from psycopg_pool.pool_async import WaitingClient as AsyncWaitingClient

    async def scenario():
        pool = AsyncConnectionPool("dbname=none", open=False)
        pool._ensure_lock()  # open() makes it on the running loop; the pool here never connects
        assert hasattr(pool._lock, "__aenter__") and isinstance(pool._waiting, deque), \
            upgrade("psycopg-pool", "AsyncConnectionPool._lock/_waiting")
        waiting = AsyncWaitingClient()
        pool._waiting.append(waiting)
        await patches.async_pool_waiting_fail(pool, psycopg.OperationalError("away"))
        assert not pool._waiting, upgrade("psycopg-pool", "AsyncConnectionPool._waiting")
        with pytest.raises(psycopg.OperationalError, match="away"):
            await waiting.wait(timeout=0.1)

    asyncio.run(scenario())


# --- DRF ------------------------------------------------------------------------------------------------------

def test_drf_request_wraps_the_django_request():
    django_request = HttpRequest()
    assert patches.django_request(Request(django_request)) is django_request, \
        upgrade("djangorestframework", "Request._request")
