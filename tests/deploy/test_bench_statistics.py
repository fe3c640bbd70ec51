"""The benchmark's stand-in for autovacuum's ANALYZE (bench.deploy.StatisticsKeeper), on the real PostgreSQL: a
table changed past autovacuum's threshold gets fresh planner statistics while a scenario runs, and an unchanged
one is left alone (analyzing every table every round cost a core's fifth of a second each time)."""
import time

import pytest
from django.db import connection

from bench.deploy import StatisticsKeeper
from chat.models import Message
from chat.services import message_send

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="planner statistics are PostgreSQL's"),
]


def _last_analyze(table: str):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")  # this backend's counts reach the shared statistics
        cursor.execute("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = %s", [table])
        return cursor.fetchone()[0]


@pytest.fixture
def keeper():
    started = []

    def start(interval: float) -> StatisticsKeeper:
        started.append(StatisticsKeeper(interval))
        started[-1].start()
        return started[-1]

    # autovacuum, where it is on, must not analyze first: the keeper would then rightly find nothing to do
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {Message._meta.db_table} SET (autovacuum_enabled = false)")
    yield start
    for thread in started:
        thread.stop()
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {Message._meta.db_table} RESET (autovacuum_enabled)")


def test_a_table_changed_past_the_threshold_is_analyzed_while_the_run_goes_on(keeper, doctor, care_group):
    table = Message._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('autovacuum_analyze_threshold')::int")
        threshold = cursor.fetchone()[0]
    for n in range(threshold + 10):
        message_send(sender=doctor, group=care_group, content=f"message {n}")
    before = _last_analyze(table)

    running = keeper(0.2)
    deadline = time.monotonic() + 15
    while _last_analyze(table) == before and time.monotonic() < deadline:
        time.sleep(0.2)

    assert _last_analyze(table) != before
    assert running.is_alive() and running.runs >= 1


def test_tables_nobody_changed_are_not_analyzed(keeper, doctor, care_group):
    message_send(sender=doctor, group=care_group, content="one message, far under the threshold")
    before = _last_analyze(Message._meta.db_table)
    running = keeper(0.1)
    time.sleep(1.0)

    assert running.runs == 0
    assert _last_analyze(Message._meta.db_table) == before
