"""The PostgreSQL connection pool's answer to an unreachable server (Django's OPTIONS["pool"])."""
import psycopg


def pool_unreachable(pool) -> None:
    """The pool gave up connecting: answer now, as without a pool, rather than after DB_POOL_TIMEOUT.

    The requests waiting for a connection fail (503) the way the pool's own close() fails them (psycopg-pool
    is pinned: its queue is not public API), and the idle connections, dead as well when the server went
    away, are dropped, so that the first request after the outage connects anew instead of trying each."""
    with pool._lock:
        waiting = list(pool._waiting)
        pool._waiting.clear()
    for client in waiting:
        client.fail(psycopg.OperationalError(f"could not connect to the database (pool {pool.name!r})"))
    pool.drain()
