"""Django's pool lends a connection that came back a moment ago without a round trip to check it, and checks (and
replaces when dead) one that came back longer ago than DB_POOL_CHECK_DELAY."""
import threading
import time

import psycopg
import pytest
from django.db import connection, connections
from psycopg_pool import ConnectionPool

from users.models import User

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(connection.vendor != "postgresql" or not connection.settings_dict["OPTIONS"].get("pool"),
                                 reason="Django's PostgreSQL pool")]


@pytest.fixture
def checks(monkeypatch):
    """The round trips the pool made to check connections before lending them."""
    made = []
    real = ConnectionPool.check_connection

    def counted(conn):
        made.append(conn)
        real(conn)

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(counted))
    return made


def one_query():
    """What a request or a task does: a connection from the pool, a query, the connection back."""
    User.objects.filter(username="nobody").exists()
    connection.close()


def test_a_connection_back_a_moment_ago_is_lent_unchecked_and_one_back_longer_ago_is_checked(settings, checks):
    settings.DB_POOL_CHECK_DELAY = 60
    for _ in range(12):  # each of the pool's connections lent once (its first check), in turn
        one_query()
    checks.clear()
    for _ in range(5):
        one_query()
    assert checks == []

    settings.DB_POOL_CHECK_DELAY = 0
    one_query()
    assert len(checks) == 1


def pool_filled(count: int) -> None:
    """`count` connections made and given back to the pool, idle in it (as after a busy moment of a server)."""
    barrier = threading.Barrier(count)

    def hold_one():
        User.objects.filter(username="nobody").exists()
        barrier.wait(timeout=10)  # every thread holds its own connection at once
        connections.close_all()

    threads = [threading.Thread(target=hold_one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_a_connection_the_database_dropped_is_replaced_once_the_delay_has_passed(settings):
    settings.DB_POOL_CHECK_DELAY = 0.2
    one_query()
    pool_filled(settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"] - 1)
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
        ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                              " WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
    assert ended >= 1  # every idle connection of the pool
    time.sleep(0.3)
    # The first check finds a dead connection, and the pool checks (and replaces) its other idle ones at once:
    # checked one by one, with the pool's backoff between failed checks, nine outlasted the pool's timeout (10 s).
    for _ in range(3):
        one_query()
