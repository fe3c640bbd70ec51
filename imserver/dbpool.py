"""The PostgreSQL connection pool's answer to an unreachable server (Django's OPTIONS["pool"])."""
import psycopg

from imserver.patches import async_pool_waiting_fail, pool_waiting_fail


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
