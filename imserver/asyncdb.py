"""PostgreSQL from the server's event loop: psycopg's async pool for the send path's two statements.

Django's ORM reaches the database from a thread (a sync view, database_sync_to_async): on a send that is a
hand-off to a thread and back, a BEGIN and a COMMIT around the statements, and Django's request cycle around
that. Here a server process keeps a pool of autocommit connections of its own, opened on its event loop with the
connection parameters and type adapters Django uses for the same database (so values load as the ORM loads them),
and the send path runs its statements on it without leaving the loop (chat.services.message_send_direct).

Off on SQLite, with SEND_DIRECT false, and outside an ASGI server (tests' threads, Celery, `manage.py`): callers
then take the ORM path. Errors are Django's: a connection that cannot be had or is lost raises
django.db.OperationalError, as a view's would (imserver.errors.database_unavailable: 503)."""
import asyncio
import contextlib
import functools
import os

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, OperationalError, connections

# The database the pools open, the writes' (the replica is read through the ORM only); rows loaded here are its.
ALIAS = DEFAULT_DB_ALIAS
_pools: dict[tuple[int, asyncio.AbstractEventLoop], object] = {}  # (pid, loop) -> AsyncConnectionPool
_opening: dict[tuple[int, asyncio.AbstractEventLoop], asyncio.Future] = {}
_lent: set = set()  # the pools' connections lent out right now (cancel_running)


def available() -> bool:
    """Whether the send path may use the pool here: PostgreSQL, Redis (the rate counters) and SEND_DIRECT."""
    return settings.SEND_DIRECT and bool(settings.REDIS_URL) and _postgresql()


@functools.cache
def _postgresql() -> bool:
    return connections[ALIAS].vendor == "postgresql"


def _connection_kwargs() -> dict:
    params = connections[ALIAS].get_connection_params()  # dbname, host, options, Django's adapters, ...
    params.pop("cursor_factory", None)  # Django's sync cursor class; the async connection has its own
    params["autocommit"] = True  # each statement is its own transaction: no BEGIN/COMMIT round trips
    params["prepare_threshold"] = settings.DB_ASYNC_PREPARE_THRESHOLD
    return params


async def _pool():
    key = (os.getpid(), asyncio.get_running_loop())
    pool = _pools.get(key)
    if pool is not None:
        return pool
    if key in _opening:
        return await asyncio.shield(_opening[key])
    from psycopg_pool import AsyncConnectionPool  # psycopg is not loaded for SQLite

    future = asyncio.get_running_loop().create_future()
    _opening[key] = future
    try:
        from imserver.dbpool import async_pool_unreachable

        # As Django's pool (settings): a server that cannot be reached fails the waiting sends at once (503).
        pool = AsyncConnectionPool(kwargs=_connection_kwargs(), min_size=settings.DB_ASYNC_POOL_MIN_SIZE,
                                   max_size=settings.DB_ASYNC_POOL_MAX_SIZE, timeout=settings.DB_POOL_TIMEOUT,
                                   reconnect_timeout=settings.DB_POOL_RECONNECT_TIMEOUT,
                                   reconnect_failed=async_pool_unreachable, name="send", open=False)
        await pool.open(wait=False)
        _pools[key] = pool
        future.set_result(pool)
        return pool
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()  # retrieved: nobody else may be waiting
        raise
    finally:
        del _opening[key]


@contextlib.contextmanager
def _django_errors():
    import psycopg
    from psycopg_pool import PoolTimeout

    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
        raise OperationalError(str(exc)) from exc
    except psycopg.IntegrityError as exc:
        raise IntegrityError(str(exc)) from exc


@contextlib.asynccontextmanager
async def connection():
    """An autocommit connection of this process's pool, for several statements in a row (one checkout, not one
    each); connection-level and integrity errors are Django's."""
    import psycopg

    pool = await _pool()
    try:
        with _django_errors():
            # getconn and putconn, not pool.connection(): its `async with conn` commits or rolls back around the
            # use, which an autocommit connection does not need (1 % of a server's CPU at 500 sends/s); putconn
            # still rolls back a connection left in a transaction, and replaces a broken one.
            conn = await pool.getconn()
            _lent.add(conn)
            try:
                yield conn
            finally:
                _lent.discard(conn)
                await pool.putconn(conn)
    except OperationalError as exc:
        if isinstance(exc.__cause__, psycopg.OperationalError):
            # The server went away, or a connection did: check the idle ones now, so that none of those it
            # broke answers a send once it is back.
            asyncio.get_running_loop().create_task(pool.check())
        raise


def cancel_running() -> int:
    """Cancel in PostgreSQL the statements still running on this process's pools; how many there were.

    For a server about to exit: an autocommit statement waiting for a lock would otherwise run and commit once it
    gets it, after its client was cut off (a transaction of the ORM's rolls back when its process is gone). The
    cancelled sends fail as in an outage (503) and store nothing."""
    from psycopg import pq

    running = [conn for conn in list(_lent) if conn.pgconn.transaction_status == pq.TransactionStatus.ACTIVE]
    for conn in running:
        conn.cancel()  # blocking: a cancel request on a connection of its own (the shutdown's watchdog bounds it)
    return len(running)


async def fetchone(sql: str, params, conn=None) -> tuple | None:
    """The first row of one statement (committed when it returns), on `conn` or a connection of the pool."""
    if conn is None:
        async with connection() as conn:
            return await fetchone(sql, params, conn)
    with _django_errors():
        cursor = await conn.execute(sql, params)
        return await cursor.fetchone()


@functools.cache
def columns(model, alias: str = "") -> str:
    """The model's concrete columns, in the order instance() reads them."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{field.column}" for field in model._meta.concrete_fields)


@functools.cache
def _loading(model, alias: str) -> tuple[list[str], list]:
    """The model's attnames, and per column the ORM's converters with their arguments (once per process)."""
    db = connections[alias]
    converters = []
    for field in model._meta.concrete_fields:
        column = field.get_col(model._meta.db_table)
        converters.append([(convert, column) for convert in
                           db.ops.get_db_converters(column) + column.get_db_converters(db)])
    return [field.attname for field in model._meta.concrete_fields], converters


def instance(model, row, alias: str = ALIAS):
    """A model instance from a row of its columns(), each value converted as the ORM converts it."""
    attnames, converters = _loading(model, alias)
    db = connections[alias]
    values = []
    for value, steps in zip(row, converters):
        for convert, column in steps:
            value = convert(value, column, db)
        values.append(value)
    return model.from_db(alias, attnames, values)
