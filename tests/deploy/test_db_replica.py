"""Read/write splitting on a real PostgreSQL primary and streaming hot standby made by the test (initdb,
pg_basebackup -R): history reads are served by the standby; a paused standby never yields a catch-up that skips
or hides a stored message; a stopped standby makes reads fall back to the primary with no error to the client;
/health/ready shows the standby and its lag throughout."""
import asyncio
import re
import threading

import httpx
import pytest

from groups.services import group_create, member_add
from tests.support.api import access_token
from tests.support.live import (
    assert_all_received,
    assert_stored_once,
    default_database,
    needs_real_services,
    wait_until,
)
from tests.support.wsclient import Client
from users.models import Role

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]

METRICS_TOKEN = "replica-test-metrics"


def _env(cluster, **extra) -> dict:
    return {"DATABASE_URL": cluster.primary_url, "DATABASE_REPLICA_URLS": cluster.replica_url,
            "DATABASE_REPLICA_CHECK_INTERVAL": "0.3", "IM_SEND_RATE": "100000/min", "METRICS_TOKEN": METRICS_TOKEN,
            **extra}


def _reads(server) -> dict[tuple[str, str], float]:
    """im_db_replica_reads_total of the server: (database, reason) -> count."""
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10).text
    found = re.findall(r'^im_db_replica_reads_total\{database="([^"]+)",reason="([^"]+)"\} (\S+)$', text, re.MULTILINE)
    return {(database, reason): float(value) for database, reason, value in found}


def _served(before: dict, after: dict) -> dict:
    return {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}


def _replica_report(server) -> dict:
    body = httpx.get(f"{server.url}/health/ready", timeout=15).json()
    assert body["status"] == "ok", body  # a replica away or behind is shown, never makes the server unready
    return body["replicas"]["replica1"]


def _setup(cluster, make_user):
    cluster.migrate()
    doctor, patient = make_user(Role.DOCTOR), make_user(Role.PATIENT)
    group = group_create(creator=doctor, group_name="Replicated", ai_enabled=False)
    quiet = group_create(creator=doctor, group_name="Unchanged", ai_enabled=False)
    for g in (group, quiet):
        member_add(group=g, user=patient, user_role=Role.PATIENT)
    return doctor, patient, group, quiet


class Reader:
    """A member reading history over HTTP as clients do: catch-up from a seq, the newest page, the group lists."""

    def __init__(self, server, user):
        self.http = httpx.Client(base_url=server.url, timeout=15,
                                 headers={"Authorization": f"Bearer {access_token(user)}"})

    def catch_up(self, group, after_seq: int = 0) -> list[int]:
        seqs, has_more = [], True
        while has_more:
            r = self.http.get("/api/message/list", params={"group_id": group.group_id, "after_seq": after_seq,
                                                           "limit": 50})
            assert r.status_code == 200, r.text
            seqs += [m["seq"] for m in r.json()["messages"]]
            has_more = r.json()["has_more"]
            after_seq = seqs[-1] if seqs else after_seq
        return seqs

    def newest(self, group) -> dict:
        r = self.http.get("/api/message/list", params={"group_id": group.group_id, "page": 1, "page_size": 5})
        assert r.status_code == 200, r.text
        return r.json()

    def groups(self) -> list[str]:
        r = self.http.get("/api/group/", params={"page_size": 100})
        assert r.status_code == 200, r.text
        return [g["group_id"] for g in r.json()["groups"]]

    def members(self, group) -> list[str]:
        r = self.http.get(f"/api/group/{group.group_id}/members")
        assert r.status_code == 200, r.text
        return [m["user_id"] for m in r.json()["members"]]


def _send(server, user, group, count: int, label: str) -> list[dict]:
    told = []
    with httpx.Client(base_url=server.url, timeout=15, headers={"Authorization": f"Bearer {access_token(user)}"}) as h:
        for i in range(count):
            r = h.post("/api/message/send", json={"group_id": group.group_id, "content": f"{label} {i}"})
            assert r.status_code == 201, r.text
            told.append(r.json())
    return told


def test_history_reads_are_served_by_the_replica(postgres_cluster, start_server, make_user):
    cluster = postgres_cluster
    with default_database(cluster.primary_url):
        doctor, patient, group, quiet = _setup(cluster, make_user)
        server = start_server("server", **_env(cluster))
        told = _send(server, doctor, group, 30, "stored")
        cluster.wait_replayed()
        assert wait_until(lambda: _replica_report(server)["status"] == "ok", what="the replica ok")
        assert _replica_report(server) == {"status": "ok", "lag_seconds": 0.0}
        reader = Reader(server, patient)
        before = _reads(server)
        assert reader.catch_up(group) == list(range(1, 31))
        newest = reader.newest(group)
        assert [m["seq"] for m in newest["messages"]] == [30, 29, 28, 27, 26] and newest["total"] == 30
        assert set(reader.groups()) == {group.group_id, quiet.group_id}
        assert reader.members(group) == [doctor.user_id, patient.user_id]
        served = _served(before, _reads(server))
        # One catch-up page (30 < 50), the newest page, the group list, the member list: all from the replica.
        assert served == {("replica1", "caught_up"): 4}, served
        # The standby ran them: its backends' last statements read the messages and the memberships.
        queries = [q for (q,) in cluster.replica.sql(f"SELECT query FROM pg_stat_activity WHERE datname ="
                                                     f" '{cluster.dbname}' AND backend_type = 'client backend'")]
        assert any('FROM "messages"' in q or '"group_members"' in q for q in queries), queries

        async def sync_over_websocket():
            client = Client("patient", patient.user_id, access_token(patient))
            await client.connect(server.ws_url)
            await assert_all_received([client], told)
            await client.close()

        before = _reads(server)
        asyncio.run(sync_over_websocket())
        assert _served(before, _reads(server)) == {("replica1", "caught_up"): 1}
        # A send, then at once a catch-up: the reader sees its own write (the replica holds it, or the primary answers).
        mine = _send(server, patient, group, 1, "mine")
        assert reader.catch_up(group, after_seq=30) == [31]
        told += mine
        assert_stored_once(told)


def test_a_paused_replica_never_hides_a_stored_message(postgres_cluster, start_server, make_user):
    cluster = postgres_cluster
    with default_database(cluster.primary_url):
        doctor, patient, group, quiet = _setup(cluster, make_user)
        # `patient` reads through a server that tolerates a long lag, so that the fences alone decide; `strict`
        # skips a replica 2 s behind.
        server = start_server("server", **_env(cluster, DATABASE_REPLICA_MAX_LAG="120"))
        strict = start_server("strict", **_env(cluster, DATABASE_REPLICA_MAX_LAG="2"))
        told = _send(server, doctor, group, 10, "before") + _send(server, doctor, quiet, 3, "quiet")
        cluster.wait_replayed()
        for each in (server, strict):
            wait_until(lambda s=each: _replica_report(s)["status"] == "ok", what="the replica ok")
        reader, strict_reader = Reader(server, patient), Reader(strict, patient)
        assert reader.catch_up(group) == list(range(1, 11))

        cluster.replica.sql("SELECT pg_wal_replay_pause()")
        wait_until(lambda: cluster.replica.sql("SELECT pg_get_wal_replay_pause_state()")[0][0] == "paused",
                   what="replay paused")
        told += _send(server, doctor, group, 10, "while paused")
        other = make_user(Role.PATIENT)
        member_add(group=group, user=other, user_role=Role.PATIENT)
        newer = group_create(creator=doctor, group_name="Created while paused", ai_enabled=False)
        member_add(group=newer, user=patient, user_role=Role.PATIENT)

        # The replica has none of that; every read shows all of it, so the primary answered each one.
        before = _reads(server)
        assert reader.catch_up(group) == list(range(1, 21))
        assert reader.catch_up(group, after_seq=15) == [16, 17, 18, 19, 20]
        newest = reader.newest(group)
        assert [m["seq"] for m in newest["messages"]] == [20, 19, 18, 17, 16] and newest["total"] == 20
        assert other.user_id in reader.members(group)
        assert newer.group_id in reader.groups()
        assert _served(before, _reads(server)) == {("default", "behind"): 5}
        # A group the replica holds up to its last_seq is still read there: the fence is per group.
        before = _reads(server)
        assert reader.catch_up(quiet) == [1, 2, 3]
        assert _served(before, _reads(server)) == {("replica1", "caught_up"): 1}

        async def sync_over_websocket():
            client = Client("patient", patient.user_id, access_token(patient))
            await client.connect(server.ws_url)
            await assert_all_received([client], told)
            await client.close()

        asyncio.run(sync_over_websocket())
        # Past DATABASE_REPLICA_MAX_LAG the replica is skipped altogether, and readiness says how far behind it is.
        report = wait_until(lambda: (r := _replica_report(strict))["status"] == "lagging" and r, 30,
                            what="the replica reported lagging")
        assert report["lag_seconds"] > 2, report
        before = _reads(strict)
        assert strict_reader.catch_up(quiet) == [1, 2, 3]
        assert strict_reader.catch_up(group) == list(range(1, 21))
        assert _served(before, _reads(strict)) == {("default", "no_replica"): 2}

        cluster.replica.sql("SELECT pg_wal_replay_resume()")
        cluster.wait_replayed()
        for each in (server, strict):
            wait_until(lambda s=each: _replica_report(s)["status"] == "ok", 30, what="the replica ok again")
        before = _reads(strict)
        assert strict_reader.catch_up(group) == list(range(1, 21))
        assert _served(before, _reads(strict)) == {("replica1", "caught_up"): 1}
        assert_stored_once(told)


def test_a_stopped_replica_makes_reads_fall_back_to_the_primary(postgres_cluster, start_server, make_user):
    cluster = postgres_cluster
    with default_database(cluster.primary_url):
        doctor, patient, group, quiet = _setup(cluster, make_user)
        server = start_server("server", **_env(cluster))
        told = _send(server, doctor, group, 20, "stored")
        cluster.wait_replayed()
        wait_until(lambda: _replica_report(server)["status"] == "ok", what="the replica ok")
        reader = Reader(server, patient)
        stop, failures = threading.Event(), []

        def read_until_stopped() -> int:
            rounds = 0
            while not stop.is_set():
                try:
                    assert reader.catch_up(group) == list(range(1, 21))
                    assert set(reader.groups()) == {group.group_id, quiet.group_id}
                except AssertionError as exc:
                    failures.append(str(exc))
                rounds += 1
            return rounds

        async def scenario():
            client = Client("patient", patient.user_id, access_token(patient))
            await client.connect(server.ws_url)
            loop = asyncio.get_running_loop()
            reading = loop.run_in_executor(None, read_until_stopped)
            await asyncio.sleep(1)
            stopping = loop.run_in_executor(None, cluster.replica.stop)  # fast shutdown: its sessions are cut
            for _ in range(10):  # the WebSocket's sync too, while it goes and after
                client.history.clear()
                await assert_all_received([client], told)
                await asyncio.sleep(0.1)
            await stopping
            report = await loop.run_in_executor(None, wait_until, lambda: (
                r := _replica_report(server))["status"] == "down" and r, 20, 0.1, "the replica reported down")
            await asyncio.sleep(1)  # reads go on with the replica gone
            stop.set()
            rounds = await reading
            await client.close()
            return report, rounds

        report, rounds = asyncio.run(scenario())
        assert failures == [], failures[:3]
        print(f"\n{rounds} rounds of reads while the replica stopped; reads by database: {_reads(server)}")
        assert report["lag_seconds"] is None and report["error"], report
        served = _reads(server)
        assert served[("replica1", "caught_up")] > 0 and served[("default", "no_replica")] > 0, served
        access = [line for line in server.output().splitlines() if '"imserver.access"' in line]
        assert access and not any('"status": 5' in line for line in access)
        assert_stored_once(told)
