"""Django's PostgreSQL connection pool (OPTIONS["pool"]): its answer to an unreachable server, and its check of a
connection before lending it."""
import time
import weakref

import psycopg
from django.db.backends.signals import connection_created
from psycopg_pool import ConnectionPool

from imserver.patches import async_pool_waiting_fail, pool_check_set, pool_waiting_fail

_returned: "weakref.WeakKeyDictionary[psycopg.Connection, float]" = weakref.WeakKeyDictionary()


def pool_unreachable(pool) -> None:
    """The pool gave up connecting: answer now, as without a pool, rather than after DB_POOL_TIMEOUT.

    The requests waiting for a connection fail (503) the way the pool's own close() fails them (its queue is not
    public API: imserver.patches), and the idle connections, dead as well when the server went away, are
    dropped, so that the first request after the outage connects anew instead of trying each."""
    pool_waiting_fail(pool, psycopg.OperationalError(f"could not connect to the database (pool {pool.name!r})"))
    pool.drain()


async def async_pool_unreachable(pool) -> None:
    """pool_unreachable for the event loop's pool (imserver.asyncdb)."""
    exc = psycopg.OperationalError(f"could not connect to the database (pool {pool.name!r})")
    await async_pool_waiting_fail(pool, exc)
    await pool.drain()


def pool_returned(conn: psycopg.Connection) -> None:
    """The pool's `reset`: when a healthy connection came back (a connection the pool finds broken is not reset)."""
    _returned[conn] = time.monotonic()


def pool_check(conn: psycopg.Connection, pool: ConnectionPool | None = None) -> None:
    """The check before a connection is lent: a round trip to the server (raises when the connection is dead, and
    the pool tries another), unless the connection came back less than DB_POOL_CHECK_DELAY seconds ago, as
    pgbouncer's server_check_delay. Under load, that is every checkout: no round trip per request or task.

    A dead one means the server restarted or ended its sessions, and the pool's other idle connections with it:
    they are all checked at once then (`pool.check()`, replacing the dead), since the pool waits a backoff step
    (1 s, 2 s, 4 s, ...) after each failed check, and nine dead connections outlasted DB_POOL_TIMEOUT."""
    from django.conf import settings  # this module is imported by the settings

    returned = _returned.get(conn)
    if returned is not None and time.monotonic() - returned < settings.DB_POOL_CHECK_DELAY:
        return
    try:
        ConnectionPool.check_connection(conn)
    except Exception:
        if pool is not None:
            pool.check()
        raise


_checks: "weakref.WeakKeyDictionary[ConnectionPool, object]" = weakref.WeakKeyDictionary()


def _check_of(pool: ConnectionPool):
    """pool_check bound to `pool` (weakly: the check is kept by the pool itself), one per pool."""
    check = _checks.get(pool)
    if check is None:
        ref = weakref.ref(pool)
        check = _checks[pool] = lambda conn: pool_check(conn, ref())
    return check


def _checked_by_pool_check(sender, connection, **kwargs) -> None:
    """Django gives its pool a check of every checkout (CONN_HEALTH_CHECKS); from the first one on, pool_check."""
    pool = getattr(connection, "pool", None)
    if pool is not None:
        pool_check_set(pool, _check_of(pool))


connection_created.connect(_checked_by_pool_check, dispatch_uid="imserver.dbpool.pool_check")
