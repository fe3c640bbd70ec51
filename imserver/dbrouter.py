"""Read/write splitting over PostgreSQL streaming replicas (DATABASE_REPLICA_URLS).

Nothing moves to a replica by accident: a read goes to one only inside `replica_read(...)`, which the history
views call, and only when that replica is up, within DATABASE_REPLICA_MAX_LAG, and has replayed what the caller
needs. Every write, everything inside a transaction, and every read after a write of the same request or WebSocket
frame stay on the primary. A replica that fails during a read is set aside and the read runs again on the
primary, so its client sees no error.

Health and lag come from a thread per process that checks each replica every DATABASE_REPLICA_CHECK_INTERVAL
seconds: reads use its last answer and never wait for a check."""
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections
from prometheus_client import Counter

from imserver.requestid import request_id_var

logger = logging.getLogger(__name__)
T = TypeVar("T")

READS = Counter("im_db_replica_reads_total", "Reads that may use a replica, by the database that served them and why",
                ["database", "reason"])

_reading_on: ContextVar[str | None] = ContextVar("replica_read_on", default=None)
# The request (or frame) id of the last write in this context: its later reads must see that write.
_wrote_in: ContextVar[str | None] = ContextVar("replica_wrote_in", default=None)
# Errors of a replica that is away or refuses the query (a recovery conflict): the primary answers instead.
_REPLICA_ERRORS = (OperationalError, InterfaceError)
# Seconds between checks of a replica found down: each failed connect is a warning in the log of every process.
DOWN_RECHECK_SECONDS = 5.0


class ReplicaRouter:
    """Django's router: reads go to the replica that `replica_read` chose for them, everything else to the primary."""

    def db_for_read(self, model, **hints):
        # The primary by name, not None: None would send a related lookup to the database its instance came from.
        return _reading_on.get() or DEFAULT_DB_ALIAS

    def db_for_write(self, model, **hints):
        _wrote_in.set(request_id_var.get())
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        return True  # a replica holds the primary's own rows

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == DEFAULT_DB_ALIAS


def replica_aliases() -> list[str]:
    """The database aliases of the replicas, in the order of DATABASE_REPLICA_URLS."""
    return [f"replica{number}" for number in range(1, len(settings.DATABASE_REPLICA_URLS) + 1)]


def replica_read(read: Callable[[], T], *, group=None) -> T:
    """`read()` with its queries on a replica when one is up, within DATABASE_REPLICA_MAX_LAG and caught up with
    what the caller needs, else on the primary; `read` returns finished data (no lazy querysets).

    Caught up means: with `group` (a ChatGroup the caller read from the primary), the replica holds the group up to
    that `last_seq`, so no message the caller may know of is missing from its answer; without, the replica has
    replayed everything the primary had committed when the read began."""
    if not settings.DATABASE_REPLICA_URLS:
        return read()
    alias, reason = _choose(group)
    if alias is None:
        READS.labels(DEFAULT_DB_ALIAS, reason).inc()
        return read()
    token = _reading_on.set(alias)
    try:
        result = read()
        READS.labels(alias, "caught_up").inc()
        return result
    except _REPLICA_ERRORS as exc:
        _monitor.set_down(alias, exc)
    finally:
        _reading_on.reset(token)
    READS.labels(DEFAULT_DB_ALIAS, "replica_failed").inc()
    return read()


def _choose(group) -> tuple[str | None, str]:
    """A replica for this read and "caught_up", or None and why the primary answers."""
    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return None, "transaction"
    if _wrote_in.get() == request_id_var.get():
        return None, "own_write"
    usable = _monitor.usable()
    if not usable:
        return None, "no_replica"
    alias = random.choice(usable)
    try:
        return (alias, "caught_up") if _caught_up(alias, group) else (None, "behind")
    except _REPLICA_ERRORS as exc:
        _monitor.set_down(alias, exc)
        return None, "replica_failed"


def _caught_up(alias: str, group) -> bool:
    if group is not None:
        replayed = type(group)._base_manager.using(alias).filter(pk=group.pk).values_list("last_seq", flat=True)
        return (replayed.first() or 0) >= group.last_seq
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        # What the primary has flushed includes every commit it has acknowledged, this caller's included.
        cursor.execute("SELECT pg_current_wal_flush_lsn()")
        (flushed,) = cursor.fetchone()
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [flushed])
        return bool(cursor.fetchone()[0])


@dataclass(frozen=True)
class ReplicaState:
    """What the last check saw of one replica: "ok", "lagging" (past DATABASE_REPLICA_MAX_LAG), "down",
    "not_standby" (promoted, or not a replica at all: it no longer follows the primary)."""

    status: str
    lag: float | None  # seconds behind the primary, None when unknown
    checked_at: float  # time.monotonic()
    error: str = ""


class _Monitor:
    """The replicas' states for this process, checked by a thread of its own."""

    def __init__(self):
        self.states: dict[str, ReplicaState] = {}
        self.lock = threading.Lock()  # one check at a time
        self.start_lock = threading.Lock()
        self.pid: int | None = None

    def usable(self) -> list[str]:
        self._ensure_running()
        # A state the thread has not renewed for a while (a check hanging on an unreachable host) is not trusted.
        fresh_after = time.monotonic() - 3 * settings.DATABASE_REPLICA_CHECK_INTERVAL - 1
        return [alias for alias, state in self.states.items()
                if state.status == "ok" and state.checked_at > fresh_after]

    def set_down(self, alias: str, exc: Exception) -> None:
        """A read found the replica failing: no reads go to it until a check finds it well again."""
        logger.warning("database replica %s failed (%s): reading from the primary", alias, exc.__class__.__name__)
        connections[alias].close()
        self.states = {**self.states, alias: ReplicaState("down", None, time.monotonic(), exc.__class__.__name__)}

    def check(self, wait: float | None = None) -> dict[str, ReplicaState]:
        """Check every replica now; while another check runs, wait for it at most `wait` seconds, then answer the
        last states as they are."""
        if not self.lock.acquire(timeout=-1 if wait is None else wait):
            return self.states
        try:
            primary_lsn = self._primary_lsn()
            states = {alias: self._recheck(alias, primary_lsn) for alias in replica_aliases()}
            for alias, state in states.items():
                before = self.states.get(alias)
                if before is None or before.status != state.status:
                    log = logger.info if state.status == "ok" else logger.warning
                    log("database replica %s: %s", alias, state.status,
                        extra={"lag_seconds": state.lag, "error": state.error})
            self.states = states
            return states
        finally:
            self.lock.release()

    def _recheck(self, alias: str, primary_lsn: str | None) -> ReplicaState:
        before = self.states.get(alias)
        if before is not None and before.status == "down" \
                and time.monotonic() - before.checked_at < DOWN_RECHECK_SECONDS:
            return before
        return self._probe(alias, primary_lsn)

    def _ensure_running(self):
        if self.pid == os.getpid():
            return
        with self.start_lock:
            if self.pid != os.getpid():  # first use, or a forked child: threads do not survive a fork
                self.pid = os.getpid()
                threading.Thread(target=self._run, name="replica-monitor", daemon=True).start()

    def _run(self):
        while True:
            try:
                self.check()
            except Exception:
                logger.exception("database replica check failed")
            finally:
                # Back to the pool between checks (the thread's connections are its own).
                for alias in (DEFAULT_DB_ALIAS, *replica_aliases()):
                    connections[alias].close_if_unusable_or_obsolete()
            time.sleep(settings.DATABASE_REPLICA_CHECK_INTERVAL)

    @staticmethod
    def _primary_lsn() -> str | None:
        try:
            with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
                cursor.execute("SELECT pg_current_wal_flush_lsn()")
                return cursor.fetchone()[0]
        except DatabaseError:
            return None  # the primary is away: measure against what the replica has received instead

    @staticmethod
    def _probe(alias: str, primary_lsn: str | None) -> ReplicaState:
        now = time.monotonic()
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute(
                    "SELECT pg_is_in_recovery(),"
                    " pg_last_wal_replay_lsn() >= COALESCE(%s::pg_lsn, pg_last_wal_receive_lsn()),"
                    " EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())", [primary_lsn])
                standby, caught_up, since_replay = cursor.fetchone()
        except DatabaseError as exc:
            connections[alias].close()
            return ReplicaState("down", None, now, exc.__class__.__name__)
        if not standby:
            return ReplicaState("not_standby", None, now)
        # Behind: as old as the last transaction it replayed (an idle primary makes this look worse, never better).
        lag = 0.0 if caught_up else (None if since_replay is None else max(0.0, float(since_replay)))
        healthy = lag is not None and lag <= settings.DATABASE_REPLICA_MAX_LAG
        return ReplicaState("ok" if healthy else "lagging", lag, now)


_monitor = _Monitor()


def replica_report() -> dict[str, dict]:
    """Each replica's state for /health/ready, checked now: `{"replica1": {"status": "ok", "lag_seconds": 0.0}}`."""
    _monitor._ensure_running()
    report = {}
    for alias, state in _monitor.check(wait=settings.HEALTH_CHECK_TIMEOUT).items():
        # Rounded up to the millisecond, never down: a replica reported "lagging" shows a lag past the limit.
        lag = None if state.lag is None else math.ceil(state.lag * 1000) / 1000
        report[alias] = {"status": state.status, "lag_seconds": lag}
        if state.error:
            report[alias]["error"] = state.error
    return report
