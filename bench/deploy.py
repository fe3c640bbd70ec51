"""A production-like deployment on this machine, for the benchmark: servers (uvicorn or daphne), Celery workers, the
reference AI service and a private Redis, on the machine's PostgreSQL; and a sampler of their CPU and memory."""
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.processes import Process, free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


class Proc(Process):
    """One process of the deployment, leading a process group of its own (stopping it stops its children)."""

    def __init__(self, log_dir: Path, name: str, argv: list[str], env: dict):
        super().__init__(log_dir, name, argv, env, new_session=True, stop_timeout=15)


class Deployment:
    """Everything `make bench` serves, started together and stopped together."""

    def __init__(self, log_dir: Path, *, database_url: str, servers: int, workers: int, worker_threads: int,
                 ai_latency: float, settings: dict, asgi_server: str = "uvicorn"):
        self.log_dir, self.database_url = log_dir, database_url
        self.n_servers, self.n_workers, self.worker_threads, self.ai_latency = servers, workers, worker_threads, ai_latency
        self.settings = settings | {"ASGI_SERVER": asgi_server}
        self.procs: list[Proc] = []
        self.servers: list[Proc] = []
        self.workers: list[Proc] = []
        self.ai: Proc | None = None
        self.redis: Proc | None = None
        self.redis_url = ""
        self.server_urls: list[str] = []

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COV_")}
        env.update(self.settings, DATABASE_URL=self.database_url, REDIS_URL=self.redis_url,
                   CELERY_BROKER_URL=self.redis_url, DJANGO_SETTINGS_MODULE="imserver.settings", PYTHONUNBUFFERED="1")
        return env

    def start_redis(self) -> str:
        """A private Redis without persistence, so nothing else shares its CPU figures or its keys."""
        if shutil.which("redis-server") is None:
            self.redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
            return self.redis_url
        port = free_port()
        self.redis = self._start("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                           "--appendonly", "no", "--dir", str(self.log_dir)], env=dict(os.environ))
        self.redis.wait_text("Ready to accept connections", timeout=20)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        return self.redis_url

    def start(self):
        ai_port = free_port()
        self.settings["AI_SERVICE_URL"] = f"http://127.0.0.1:{ai_port}/reply"
        self.ai = self._start("ai-service", [sys.executable, "manage.py", "ai_reference_serve", "--port", str(ai_port),
                                             "--latency", str(self.ai_latency), "--jitter", "0",
                                             # streamed pieces sent back to back: the AI's time is its latency
                                             "--chunk-delay", "0",
                                             "--api-key", self.settings["AI_SERVICE_API_KEY"]])
        for i in range(self.n_servers):
            port = free_port()
            server = self._start(f"server-{i + 1}", [sys.executable, "-m", "imserver.server", "-b", "127.0.0.1",
                                                     "-p", str(port), "imserver.asgi:application"])
            self.servers.append(server)
            self.server_urls.append(f"http://127.0.0.1:{port}")
        for i in range(self.n_workers):
            self.workers.append(self._start(f"worker-{i + 1}", [
                sys.executable, "-m", "celery", "-A", "imserver", "worker", "--loglevel", "warning",
                "--pool", "threads", "--concurrency", str(self.worker_threads), "--hostname", f"bench{i + 1}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat"]))
        self.ai.wait_http(f"http://127.0.0.1:{ai_port}/")
        for server, url in zip(self.servers, self.server_urls):
            server.wait_http(f"{url}/health/ready")
        if self.workers:
            self.workers[0].wait(lambda: _workers_answering(len(self.workers)), timeout=60)

    def _start(self, name: str, argv: list[str], env: dict | None = None) -> Proc:
        proc = Proc(self.log_dir, name, argv, env if env is not None else self.env())
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in reversed(self.procs):
            proc.stop()

    def components(self) -> dict[str, list[int]]:
        return {"servers": [p.pid for p in self.servers], "workers": [p.pid for p in self.workers],
                "ai_service": [self.ai.pid] if self.ai else [], "redis": [self.redis.pid] if self.redis else []}


def _workers_answering(expected: int) -> bool:
    """All workers answer a broadcast ping (the orchestrator's Celery app shares their broker)."""
    from imserver.celery import app

    try:
        return len(app.control.ping(timeout=0.5)) >= expected
    except Exception:  # noqa: BLE001 - the broker is still starting
        return False


def _cpu_and_rss(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system, this process and its reaped children) and resident MB of one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        statm = Path(f"/proc/{pid}/statm").read_text().split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0, 0.0
    ticks = sum(int(x) for x in stat[11:15])
    return ticks / CLOCK_TICKS, int(statm[1]) * PAGE_KB / 1024


def _pids_named(comm: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def machine_cpu() -> dict[str, float]:
    """The whole machine's CPU seconds so far (/proc/stat): `busy`, every kind of work, and `stolen`, the time
    the hypervisor gave other guests while this one had work to run."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]] + [0] * 8)[:8]
    return {"busy": (user + nice + system + irq + softirq) / CLOCK_TICKS, "stolen": steal / CLOCK_TICKS}


def speed_probe() -> float:
    """Seconds for 10 million Python additions. A virtual machine's speed changes within an hour (its neighbours
    share the host): runs compare only when their probes are alike."""
    started, total = time.perf_counter(), 0
    for i in range(10_000_000):
        total += i
    return round(time.perf_counter() - started, 2)


_ECHO = """
import socket, sys
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
peer, _ = server.accept()
peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while data := peer.recv(64):
    peer.sendall(data)
"""


def machine_probes() -> dict:
    """What every result says of the machine's speed just after its run (the two probes below)."""
    return {"speed_probe_s": speed_probe(), "loopback_round_trip_us": loopback_probe()}


def loopback_probe(round_trips: int = 5000) -> float:
    """Microseconds, the median of `round_trips`, for 32 bytes to a process of its own over loopback TCP and back.

    What the deployment does most (a send is round trips to PostgreSQL, Redis and the clients) goes through the
    kernel, whose cost on a virtual machine moves apart from the speed of Python (speed_probe)."""
    echo = subprocess.Popen([sys.executable, "-c", _ECHO], stdout=subprocess.PIPE, text=True)
    try:
        port = int(echo.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            times = []
            for _ in range(round_trips):
                started = time.perf_counter()
                sock.sendall(b"x" * 32)
                received = 0
                while received < 32:
                    received += len(sock.recv(64))
                times.append(time.perf_counter() - started)
        times.sort()
        return round(times[len(times) // 2] * 1e6, 1)
    finally:
        if echo.poll() is None:  # the probe failed before its connection closed: the echo would wait forever
            echo.kill()
        echo.wait()


class Sampler(threading.Thread):
    """Every second: CPU % and resident MB of each component (servers, workers, PostgreSQL, Redis, load)."""

    def __init__(self, components: dict[str, list[int]], interval: float = 1.0):
        super().__init__(daemon=True)
        self.components, self.interval = dict(components), interval
        self.samples: list[dict] = []
        self.halt = threading.Event()

    def pids(self) -> dict[str, list[int]]:
        pids = dict(self.components)
        pids["postgresql"] = _pids_named("postgres")
        return pids

    def snapshot(self) -> dict[str, tuple[float, float]]:
        return {name: tuple(map(sum, zip(*([_cpu_and_rss(p) for p in pids] or [(0.0, 0.0)]))))
                for name, pids in self.pids().items()}

    def run(self):
        before, machine_before, t_before = self.snapshot(), machine_cpu(), time.time()
        while not self.halt.wait(self.interval):
            now, machine_now, t_now = self.snapshot(), machine_cpu(), time.time()
            span = t_now - t_before
            self.samples.append({
                "t": t_now,
                "cpu_percent": {k: round(max(0.0, (now[k][0] - before.get(k, now[k])[0]) / span * 100), 1) for k in now},
                "rss_mb": {k: round(now[k][1], 1) for k in now},
                "machine_percent": {k: round(max(0.0, (machine_now[k] - machine_before[k]) / span * 100), 1)
                                    for k in machine_now},
            })
            before, machine_before, t_before = now, machine_now, t_now

    def stop(self) -> list[dict]:
        self.halt.set()
        self.join(timeout=5)
        return self.samples


def rss_mb(pids: list[int]) -> float:
    return sum(_cpu_and_rss(pid)[1] for pid in pids)


def _statistics_tables() -> list[str]:
    from ai_bridge.models import AIInteractionRecord
    from chat.models import Message
    from groups.models import ChatGroup, GroupMember

    return [m._meta.db_table for m in (Message, ChatGroup, GroupMember, AIInteractionRecord)]


def planner_statistics_refresh(tables: list[str] | None = None) -> None:
    """The planner statistics a running system's autovacuum keeps: the tables grow by thousands of rows a phase,
    and with the counts of an almost empty table PostgreSQL may probe a sender's client_msg_ids through the
    (sender, group, seq) index instead of the unique one (measured: 4-8 ms of PostgreSQL CPU per send instead of
    0.3), a cost that grows with every message the sender stored."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(tables or _statistics_tables())}")


def autovacuum_on() -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        return cursor.fetchone()[0] == "on"


class StatisticsKeeper(threading.Thread):
    """Autovacuum's ANALYZE while a scenario runs, on a PostgreSQL whose autovacuum is off (as on the benchmark's
    machine): otherwise the statistics stay those of the empty tables the run began with, and the send
    statement's plan with them (planner_statistics_refresh). As autovacuum does: every `interval` seconds (its
    naptime), the tables changed by more than autovacuum_analyze_threshold rows plus
    autovacuum_analyze_scale_factor of their size since they were last analyzed. (An ANALYZE of every table every
    10 s cost 170-200 ms of a core each time at 600 messages/s, and the plans made again after it.)"""

    def __init__(self, interval: float):
        super().__init__(daemon=True, name="bench-analyze")
        self.interval = interval
        self.halt = threading.Event()
        self.runs = 0

    def _due(self) -> list[str]:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
                           " WHERE s.relname = ANY(%s) AND s.n_mod_since_analyze >"
                           " current_setting('autovacuum_analyze_threshold')::float"
                           " + current_setting('autovacuum_analyze_scale_factor')::float * greatest(c.reltuples, 0)",
                           [_statistics_tables()])
            return [row[0] for row in cursor.fetchall()]

    def run(self):
        from django.db import connection

        try:
            while not self.halt.wait(self.interval):
                try:
                    due = self._due()
                    if due:
                        planner_statistics_refresh(due)
                        self.runs += 1
                except Exception as exc:  # noqa: BLE001 - as autovacuum: a failed round is said, the next one tried
                    print(f"[bench] ANALYZE failed ({exc}); the planner statistics may be stale", flush=True)
                    connection.close()
        finally:
            connection.close()

    def stop(self) -> int:
        self.halt.set()
        self.join(timeout=30)
        return self.runs
