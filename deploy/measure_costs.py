"""Per-message costs for sizing a deployment (README, "Capacity"): run `.venv/bin/python deploy/measure_costs.py`.

It starts a PostgreSQL of its own (initdb, as tests/support/live.py does), a private redis-server and one server process
(the web command of deploy/Procfile), connects care teams of five over WebSocket, sends messages over HTTP and over
the WebSocket, and reads what each part spent: CPU time of the server process, of PostgreSQL and of Redis (from
/proc and INFO), Redis commands, PostgreSQL transactions and WAL bytes (what a replica receives), and the server's
resident memory per idle connection. Nothing else on the machine is touched; everything started is stopped.
Needs PostgreSQL's server binaries and redis-server (`make deploy-tools`)."""
import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "imserver.settings"
# This process's own ORM (it makes the care teams) reads the private PostgreSQL; its port is set once known.
os.environ.update(DATABASE_URL="postgres://postgres@127.0.0.1/im_costs", REDIS_URL="", CELERY_BROKER_URL="")


def cpu_seconds(pids) -> float:
    """User plus system CPU time of the processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """The process and all its descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            todo += [int(c) for c in open(f"/proc/{current}/task/{current}/children").read().split()]
        except FileNotFoundError:
            pass
    return found


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=int, default=20, help="care teams, each member connected")
    parser.add_argument("--members", type=int, default=5, help="members per team: a doctor and patients")
    parser.add_argument("--messages", type=int, default=600, help="messages per transport")
    parser.add_argument("--idle", type=int, default=1000, help="idle connections for the memory figure")
    args = parser.parse_args()

    from tests.support.live import PostgresCluster, RedisServer

    log_dir = Path(tempfile.mkdtemp(prefix="im-costs-"))
    started = []

    def processes(process, **ready):
        started.append(process)
        return process.wait_ready(**ready)

    processes.log_dir = log_dir
    cluster = None
    try:
        cluster = PostgresCluster(processes, dbname="im_costs")
        cluster.replica.stop()  # the primary alone: its WAL is what a replica would receive
        redis = processes(RedisServer(log_dir, "redis"))
        from django.conf import settings

        settings.DATABASES["default"].update(PORT=cluster.primary.port, OPTIONS={})
        cluster.migrate()
        import django

        django.setup()
        result = asyncio.run(measure(args, cluster, redis, processes))
        print(json.dumps(result, indent=2))
    finally:
        for process in reversed(started):
            process.stop()
        if cluster is not None:
            cluster.remove()
        shutil.rmtree(log_dir, ignore_errors=True)


async def measure(args, cluster, redis, processes) -> dict:
    import httpx
    import redis as redis_client
    from asgiref.sync import sync_to_async

    from groups.services import group_create, member_add
    from tests.support.live import ProductionServer
    from tests.support.wsclient import Client
    from users.models import Role
    from users.services import user_create, user_tokens

    @sync_to_async
    def care_teams():
        teams = []
        for t in range(args.teams):
            doctor = user_create(username=f"costs_dr_{t}", user_role=Role.DOCTOR)
            patients = [user_create(username=f"costs_p_{t}_{i}", user_role=Role.PATIENT)
                        for i in range(args.members - 1)]
            group = group_create(creator=doctor, group_name=f"Team {t}", ai_enabled=False)
            for patient in patients:
                member_add(group=group, user=patient, user_role=Role.PATIENT)
            teams.append((group.group_id, [(u.user_id, user_tokens(user=u)["access"]) for u in (doctor, *patients)]))
        return teams

    teams = await care_teams()
    server = processes(ProductionServer(processes.log_dir, "server", DATABASE_URL=cluster.primary_url,
                                        REDIS_URL=redis.url, AI_TASKS_IN_PROCESS="true",
                                        IM_SEND_RATE="1000000/min",
                                        WS_RATE_MESSAGES="1000000", WS_MAX_CONNECTIONS_PER_USER=str(args.idle + 10),
                                        DB_POOL_MAX_SIZE="20"))
    clients = []
    for group_id, members in teams:
        for user_id, token in members:
            client = Client(user_id, user_id, token)
            await client.connect(server.ws_url)
            clients.append((group_id, client))
    rc = redis_client.Redis(port=redis.port)

    def counters() -> dict:
        info = rc.info("all")
        wal, commits = cluster.primary.sql(
            "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, (SELECT xact_commit FROM pg_stat_database"
            f" WHERE datname = '{cluster.dbname}')", cluster.dbname)[0]
        return {"server_cpu": cpu_seconds([server.proc.pid]), "pg_cpu": cpu_seconds(tree(cluster.primary.proc.pid)),
                "redis_cpu": info["used_cpu_user"] + info["used_cpu_sys"],
                "redis_commands": sum(v["calls"] for k, v in info.items() if k.startswith("cmdstat_")),
                "wal_bytes": float(wal), "pg_commits": commits}

    def per_message(before, after, count) -> dict:
        return {"server_cpu_ms": round((after["server_cpu"] - before["server_cpu"]) * 1000 / count, 2),
                "postgres_cpu_ms": round((after["pg_cpu"] - before["pg_cpu"]) * 1000 / count, 2),
                "redis_cpu_us": round((after["redis_cpu"] - before["redis_cpu"]) * 1e6 / count, 1),
                "redis_commands": round((after["redis_commands"] - before["redis_commands"]) / count, 2),
                "postgres_commits": round((after["pg_commits"] - before["pg_commits"]) / count, 2),
                "wal_bytes": round((after["wal_bytes"] - before["wal_bytes"]) / count)}

    async def delivered(total_per_client):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(len(c.push_seqs) >= total_per_client for _, c in clients):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("not every push arrived")

    results = {"connections": len(clients), "deliveries_per_message": args.members}
    # HTTP: 8 senders at a time, each message to its sender's team.
    before = counters()
    queue = asyncio.Queue()
    for i in range(args.messages):
        group_id, members = teams[i % len(teams)]
        queue.put_nowait((group_id, members[i % args.members][1], f"http {i}"))

    async def http_sender():
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            while not queue.empty():
                group_id, token, content = queue.get_nowait()
                r = await http.post("/api/message/send", json={"group_id": group_id, "content": content},
                                    headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 201, r.text

    started = time.monotonic()
    await asyncio.gather(*(http_sender() for _ in range(8)))
    await delivered(args.messages // len(teams))
    results["http"] = per_message(before, counters(), args.messages)
    results["http"]["messages_per_s"] = round(args.messages / (time.monotonic() - started))

    # WebSocket: each member sends in turn on its own connection.
    before = counters()
    started = time.monotonic()
    senders = [c for _, c in clients]
    for i in range(args.messages):
        group_id, client = clients[i % len(clients)]
        await client.send({"type": "send_message", "group_id": group_id, "content": f"ws {i}"})
        if i % 20 == 19:
            await asyncio.sleep(0.01)
    await delivered(2 * args.messages // len(teams))
    results["websocket"] = per_message(before, counters(), args.messages)
    results["websocket"]["messages_per_s"] = round(args.messages / (time.monotonic() - started))

    # Memory: idle connections of one user, on top of those open.
    rss_before = rss_kib(server.proc.pid)
    user_id, token = teams[0][1][1]
    idle = []
    for _ in range(args.idle):
        client = Client("idle", user_id, token)
        await client.connect(server.ws_url)
        idle.append(client)
    await asyncio.sleep(2)
    results["memory_per_idle_connection_kib"] = round((rss_kib(server.proc.pid) - rss_before) / args.idle, 1)
    results["server_rss_mib"] = round(rss_kib(server.proc.pid) / 1024)
    for client in [*idle, *senders]:
        await client.close()
    return results


if __name__ == "__main__":
    main()
