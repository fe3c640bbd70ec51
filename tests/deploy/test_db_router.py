"""The replica router's decisions, without replicas (tests/deploy/test_db_replica.py runs the real ones): a read moves
to a replica only inside replica_read, only when one is usable and caught up, never inside a transaction or after a
write of the same request, and a replica failing mid-read is set aside while the primary answers."""
import uuid

import pytest
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction

from imserver import dbrouter
from imserver.requestid import request_id_var

ROUTER = dbrouter.ReplicaRouter()


class _Connections:
    """Django's connections, with a stand-in for the replica alias the test settings do not have."""

    class Replica:
        closed = 0

        def close(self):
            self.closed += 1

    def __init__(self):
        self.replica = self.Replica()

    def __getitem__(self, alias):
        return connections[alias] if alias == DEFAULT_DB_ALIAS else self.replica


@pytest.fixture
def one_replica(settings, monkeypatch):
    """A configured replica that the monitor finds well and caught up, unless a test says otherwise."""
    settings.DATABASE_REPLICA_URLS = ["postgres://replica.invalid/im"]
    fake = _Connections()
    monkeypatch.setattr(dbrouter, "connections", fake)
    monkeypatch.setattr(dbrouter._monitor, "usable", lambda: ["replica1"])
    monkeypatch.setattr(dbrouter, "_caught_up", lambda alias, group: True)
    monkeypatch.setattr(dbrouter._monitor, "states", {})
    request_id_var.set(uuid.uuid4().hex)  # a request of its own: no write of another test's counts
    return fake


def _reads(database: str, reason: str) -> float:
    return dbrouter.READS.labels(database, reason)._value.get()


def test_without_replicas_every_read_is_the_primarys(settings):
    settings.DATABASE_REPLICA_URLS = []
    assert dbrouter.replica_read(lambda: ROUTER.db_for_read(None)) == DEFAULT_DB_ALIAS
    assert settings.DATABASE_ROUTERS == [] or ROUTER.db_for_read(None) == DEFAULT_DB_ALIAS


def test_only_reads_inside_replica_read_move(one_replica):
    before = _reads("replica1", "caught_up")
    assert dbrouter.replica_read(lambda: (ROUTER.db_for_read(None), ROUTER.db_for_write(None))) == \
        ("replica1", DEFAULT_DB_ALIAS)
    assert ROUTER.db_for_read(None) == DEFAULT_DB_ALIAS  # and nothing else
    assert _reads("replica1", "caught_up") == before + 1
    assert ROUTER.allow_migrate(DEFAULT_DB_ALIAS, "chat") and not ROUTER.allow_migrate("replica1", "chat")


@pytest.mark.django_db
def test_inside_a_transaction_the_primary_reads(one_replica):
    with transaction.atomic():
        assert dbrouter.replica_read(lambda: ROUTER.db_for_read(None)) == DEFAULT_DB_ALIAS


def test_after_a_write_of_the_same_request_the_primary_reads(one_replica):
    ROUTER.db_for_write(None)
    assert dbrouter.replica_read(lambda: ROUTER.db_for_read(None)) == DEFAULT_DB_ALIAS
    request_id_var.set(uuid.uuid4().hex)  # the next request
    assert dbrouter.replica_read(lambda: ROUTER.db_for_read(None)) == "replica1"


def test_a_replica_behind_or_none_usable_leaves_the_read_to_the_primary(one_replica, monkeypatch):
    monkeypatch.setattr(dbrouter, "_caught_up", lambda alias, group: False)
    before = _reads(DEFAULT_DB_ALIAS, "behind")
    assert dbrouter.replica_read(lambda: ROUTER.db_for_read(None)) == DEFAULT_DB_ALIAS
    assert _reads(DEFAULT_DB_ALIAS, "behind") == before + 1
    monkeypatch.setattr(dbrouter._monitor, "usable", list)
    assert dbrouter.replica_read(lambda: ROUTER.db_for_read(None)) == DEFAULT_DB_ALIAS


def test_a_replica_failing_mid_read_is_set_aside_and_the_primary_answers(one_replica):
    seen = []

    def read():
        seen.append(ROUTER.db_for_read(None))
        if seen[-1] == "replica1":
            raise OperationalError("the replica went away")
        return "answered"

    assert dbrouter.replica_read(read) == "answered"
    assert seen == ["replica1", DEFAULT_DB_ALIAS]
    assert dbrouter._monitor.states["replica1"].status == "down"
    assert one_replica.replica.closed == 1


def test_a_state_not_renewed_is_not_trusted(settings, monkeypatch):
    settings.DATABASE_REPLICA_URLS = ["postgres://replica.invalid/im"]
    monkeypatch.setattr(dbrouter._monitor, "_ensure_running", lambda: None)
    monkeypatch.setattr(dbrouter._monitor, "states", {
        "replica1": dbrouter.ReplicaState("ok", 0.0, checked_at=0.0)})  # checked long ago
    assert dbrouter._monitor.usable() == []


def test_a_replica_reported_lagging_shows_a_lag_past_the_limit(settings, monkeypatch):
    # 2.0004 s behind with a 2 s limit is lagging; rounded to the millisecond it must not read as 2.0.
    settings.DATABASE_REPLICA_URLS = ["postgres://replica.invalid/im"]
    settings.DATABASE_REPLICA_MAX_LAG = 2
    monkeypatch.setattr(dbrouter._monitor, "_ensure_running", lambda: None)
    monkeypatch.setattr(dbrouter._monitor, "check", lambda wait=None: {
        "replica1": dbrouter.ReplicaState("lagging", 2.0004, checked_at=0.0)})
    assert dbrouter.replica_report() == {"replica1": {"status": "lagging", "lag_seconds": 2.001}}
