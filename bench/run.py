"""`make bench`: start a production-like deployment, load it with Locust, write results, stop everything.

    python -m bench.run [seed] [peak] [connections] [ai] [send] [--users N] [--duration S] [--servers N] ...

Each scenario gets a fresh deployment (daphne servers, Celery workers, the reference AI service, a private Redis)
on a database of its own on the PostgreSQL of BENCH_DATABASE_URL (or DATABASE_URL's server, or the local one).
Results go to `bench/results/<date>-<scenario>.json` and `.md`, with PNG charts beside them.
"""
import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from bench import report
from bench.deploy import Deployment, Sampler, StatisticsKeeper, autovacuum_on, rss_mb
from bench.processes import ROOT
from bench.send import DEFAULTS as SEND_DEFAULTS
from bench.send import SendBench

SCENARIOS = {
    # users: Locust users (members of groups of five); send_interval: seconds between one member's messages.
    "seed": {"users": 100, "send_interval": 2.0, "send_seconds": 60, "drain_seconds": 3},
    "peak": {"users": 100, "rates": [100, 150, 200, 250, 300, 400, 500, 600, 800, 1000],
             "step_seconds": 15, "drain_seconds": 3, "p99_limit_ms": 100},
    "connections": {"users": 5000, "steps": [1000, 2000, 3000, 4000, 5000], "spawn_rate": 100, "settle_seconds": 3},
    # burst: messages a patient sends burst_gap seconds apart before waiting for the answer; coalesce_seconds is the
    # deployment's AI_COALESCE_SECONDS (0: every message answered alone, as before coalescing existed).
    "ai": {"patients": 100, "send_interval": 5.0, "send_seconds": 60, "drain_seconds": 8, "ai_latency": 1.0,
           "burst": 1, "burst_gap": 0.2, "coalesce_seconds": 0.0},
    # closed-loop sends over HTTP (wrk) and WebSocket (bench.wsload): see bench/send.py
    "send": dict(SEND_DEFAULTS),
}
# With PostgreSQL's autovacuum off, the tables autovacuum would analyze are analyzed this often (its naptime)
# while a Locust scenario runs.
ANALYZE_SECONDS = float(os.environ.get("BENCH_ANALYZE_SECONDS", "60"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", metavar="scenario", help=f"any of {', '.join(SCENARIOS)} (default all)")
    parser.add_argument("--users", type=int, help="Locust users (seed, peak, connections) or patients (ai)")
    parser.add_argument("--duration", type=float, help="seconds of sending (seed, ai)")
    parser.add_argument("--rates", help="peak: the target messages/s of the steps, comma-separated")
    parser.add_argument("--step-seconds", type=float, help="peak: seconds each rate is held")
    parser.add_argument("--ws-share", type=float, help="share of sends made over the WebSocket (default 0.5)")
    parser.add_argument("--burst", type=int, help="ai: messages per patient burst (default 1); with more than one, "
                                                  "the deployment coalesces bursts (--coalesce, default 1 s)")
    parser.add_argument("--coalesce", type=float, help="ai: the deployment's AI_COALESCE_SECONDS")
    # The production launcher's server (deploy/Procfile); daphne is what `make run` serves.
    parser.add_argument("--asgi-server", choices=("daphne", "uvicorn"),
                        default=os.environ.get("BENCH_ASGI_SERVER", "uvicorn"))
    # Default: uvicorn, one process per core (on 2 cores, 2 beat 3 in every phase of `send`, and in `peak`);
    # daphne, 3 (measured best on 2 cores at 200 messages/s: p99 204 ms against 440 ms with 2).
    parser.add_argument("--servers", type=int, default=int(os.environ["BENCH_SERVERS"])
                        if os.environ.get("BENCH_SERVERS") else None)
    # 2 workers of 32 threads measured better than 1 of 64 for `ai` (overhead p95 92 ms against 103 ms).
    parser.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_WORKERS", 2)))
    parser.add_argument("--worker-threads", type=int, default=int(os.environ.get("BENCH_WORKER_THREADS", 32)))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    args = parser.parse_args(argv)
    if args.servers is None:
        args.servers = len(os.sched_getaffinity(0)) if args.asgi_server == "uvicorn" else 3
    scenarios = args.scenarios or list(SCENARIOS)
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = recorded_command(argv if argv is not None else sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="im-bench-"))
    database_url = bench_database_url()
    print(f"[bench] database {urlsplit(database_url).path.lstrip('/')}, logs in {work}", flush=True)
    recreate_database(database_url)
    shared = Shared(work, database_url)
    failures = []
    try:
        shared.start()
        for scenario in scenarios:
            params = dict(SCENARIOS[scenario])
            if args.users:
                params["patients" if scenario == "ai" else "users"] = args.users
                if scenario == "connections":
                    params["steps"] = _steps_to(args.users)
            if args.duration:
                params["send_seconds"] = args.duration
            if args.ws_share is not None:
                params["ws_share"] = args.ws_share
            if scenario == "peak" and args.rates:
                params["rates"] = [int(r) for r in args.rates.split(",")]
            if scenario == "peak" and args.step_seconds:
                params["step_seconds"] = args.step_seconds
            if scenario == "ai" and args.burst:
                params["burst"] = args.burst
                params["coalesce_seconds"] = 1.0 if args.burst > 1 else 0.0
            if scenario == "ai" and args.coalesce is not None:
                params["coalesce_seconds"] = args.coalesce
            if scenario == "send":
                result = SendBench(params, args, out_dir, command, shared).run()
            else:
                result = Bench(scenario, params, args, out_dir, command, shared).run()
            if not result["integrity"]["ok"]:
                failures.append(scenario)
    finally:
        shared.stop()
    report.write_summary(out_dir)
    if failures:
        print(f"[bench] integrity problems in: {', '.join(failures)}", flush=True)
        return 1
    return 0


class Shared:
    """What every scenario of a run shares: the database, a private Redis, and this process's Django."""

    def __init__(self, work: Path, database_url: str):
        self.work, self.database_url = work, database_url
        self.settings = {
            "DEBUG": "false", "SECRET_KEY": "bench-secret-key-" + "x" * 40, "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING", "CHANNEL_LAYER_PREFIX": "bench", "JWT_ACCESS_MINUTES": "600",
            "AI_SERVICE_API_KEY": "bench-ai-key",
            # The load is many users on one machine: the per-user limits are raised, not switched off.
            "IM_SEND_RATE": os.environ.get("BENCH_SEND_RATE", "6000/min"),
            "WS_RATE_MESSAGES": os.environ.get("BENCH_WS_RATE_MESSAGES", "1000"),
        }
        self.redis = Deployment(work, database_url=database_url, servers=0, workers=0, worker_threads=0,
                                ai_latency=0, settings=dict(self.settings))

    def start(self):
        self.redis_url = self.redis.start_redis()
        env = self.redis.env()
        os.environ.update(env)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)

    def stop(self):
        self.redis.stop()


def recorded_command(argv: list[str]) -> str:
    """The command line as the results record it: an --out folder outside the project is written as DIR (the
    results are committed, and a path of one machine means nothing on another)."""
    words, hide = [], False
    for arg in argv:
        if hide:
            words.append(arg if _inside_project(arg) else "DIR")
            hide = False
        elif arg == "--out":
            words.append(arg)
            hide = True
        elif arg.startswith("--out="):
            words.append(arg if _inside_project(arg[6:]) else "--out=DIR")
        else:
            words.append(arg)
    return "python -m bench.run " + " ".join(shlex.quote(w) for w in words)


def _inside_project(path: str) -> bool:
    return Path(path).resolve().is_relative_to(ROOT)


def _steps_to(total: int) -> list[int]:
    step = max(1, math.ceil(total / 5))
    return sorted({min(total, step * i) for i in range(1, 6)})


def bench_database_url(name: str | None = None) -> str:
    """A database of the benchmark's own (BENCH_DATABASE_NAME, default im_bench), on BENCH_DATABASE_URL's
    PostgreSQL server, or DATABASE_URL's, or the local one."""
    base = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL") or ""
    if not base.startswith("postgres"):
        base = "postgres://postgres@127.0.0.1:5432/im_bench"
    name = name or os.environ.get("BENCH_DATABASE_NAME", "im_bench")
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}"))


def recreate_database(url: str, *, create: bool = True):
    """Drop the benchmark's database if it is there, and create it empty (unless `create` is False)."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')


class Bench:
    """One scenario: database, deployment, fixture, Locust, results."""

    def __init__(self, scenario: str, params: dict, args, out_dir: Path, command: str, shared: Shared):
        self.scenario, self.params, self.args, self.out_dir, self.command = scenario, params, args, out_dir, command
        self.shared = shared
        self.work = shared.work / scenario
        self.work.mkdir(parents=True, exist_ok=True)
        self.settings = dict(shared.settings, AI_HTTP_MAX_CONNECTIONS=str(args.worker_threads),
                             AI_COALESCE_SECONDS=str(params.get("coalesce_seconds", 0.0)))

    def log(self, text: str):
        print(f"[bench {self.scenario}] {text}", flush=True)

    def run(self) -> dict:
        deployment = Deployment(self.work, database_url=self.shared.database_url, servers=self.args.servers,
                                workers=self.args.workers if self.scenario == "ai" else 0,
                                worker_threads=self.args.worker_threads, ai_latency=self.params.get("ai_latency", 0.2),
                                settings=self.settings, asgi_server=self.args.asgi_server)
        deployment.redis_url = self.shared.redis_url
        try:
            fixture = self._fixture(self.shared.redis_url)
            self.log(f"starting {self.args.servers} servers"
                     + (f" and {len(deployment.workers) or self.args.workers} Celery worker(s)"
                        if self.scenario == "ai" else ""))
            deployment.start()
            fixture["servers"] = deployment.server_urls
            self._warm_up(deployment, fixture)
            fixture_path = self.work / "fixture.json"
            fixture_path.write_text(json.dumps(fixture))
            sampler = Sampler(deployment.components())
            sampler.components["redis"] = self.shared.redis.components()["redis"]
            sampler.start()
            baseline_rss = rss_mb(sampler.components["servers"])
            keeper = None if autovacuum_on() else StatisticsKeeper(ANALYZE_SECONDS)
            if keeper is not None:
                self.log(f"PostgreSQL's autovacuum is off: its ANALYZE every {ANALYZE_SECONDS:g} s, as it would")
                keeper.start()
            started = time.time()
            probes = self._locust(fixture_path, sampler, fixture)
            resources = sampler.stop()
            if keeper is not None:
                keeper.stop()
            truth = self._truth(fixture)
            result = report.analyse(
                scenario=self.scenario, params=self.params, fixture=fixture, samples_dir=self.work, truth=truth,
                resources=resources, probes=probes, baseline_rss=baseline_rss, started=started,
                config={"servers": self.args.servers, "asgi_server": self.args.asgi_server,
                        "workers": len(deployment.workers),
                        "worker_threads": self.args.worker_threads if deployment.workers else 0,
                        "analyze_every_s": ANALYZE_SECONDS if keeper is not None else None,
                        "settings": {k: v for k, v in self.settings.items() if k.startswith(("IM_", "WS_"))}},
                command=self.command, coord_url=fixture["coord_url"])
            paths = report.write(result, self.out_dir, charts=not self.args.no_charts)
            self.log("wrote " + ", ".join(p.name for p in paths))
            print(report.headline(result), flush=True)
            return result
        finally:
            deployment.stop()

    def _fixture(self, redis_url: str) -> dict:
        import redis

        from bench.fixture import care_teams, crowd

        coord_url = redis_url.rsplit("/", 1)[0] + "/1"
        redis.Redis.from_url(coord_url).flushdb()
        t0 = time.time()
        if self.scenario == "connections":
            members, announcer = crowd(self.scenario, self.params["users"])
            extra = {"announcer": announcer}
        elif self.scenario == "ai":
            members, extra = care_teams(self.scenario, patients=self.params["patients"], ai_enabled=True), {}
        else:
            members, extra = care_teams(self.scenario, patients=math.ceil(self.params["users"] / 5) * 3,
                                        ai_enabled=False), {}
        self.log(f"{len(members)} members ready in {time.time() - t0:.1f} s")
        return {"scenario": self.scenario, "params": self.params, "members": members, "coord_url": coord_url,
                "out_dir": str(self.work), **extra}

    def _warm_up(self, deployment: Deployment, fixture: dict):
        """Every server answers a few real calls first, so that lazy imports are not measured."""
        member = fixture.get("announcer") or fixture["members"][0]
        for url in deployment.server_urls:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {member['token']}"}) as client:
                for _ in range(3):
                    client.get("/api/message/list", params={"group_id": member["group_id"], "after_seq": 0})

    def _locust(self, fixture_path: Path, sampler: Sampler, fixture: dict) -> list[dict]:
        env = dict(os.environ, BENCH_FIXTURE=str(fixture_path), PYTHONUNBUFFERED="1")
        argv = [sys.executable, "-m", "locust", "-f", str(ROOT / "tests" / "load" / "locustfile.py"), "--headless",
                "--host", fixture["servers"][0], "--csv", str(self.work / "locust"), "--stop-timeout", "5",
                "--loglevel", "WARNING", "--exit-code-on-error", "0"]
        self.log("load: " + " ".join(argv[1:]))
        locust = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)
        sampler.components["load"] = [locust.pid]
        probes: list[dict] = []
        if self.scenario == "connections":
            prober = threading.Thread(target=self._probe_steps, args=(fixture, locust, probes, sampler), daemon=True)
            prober.start()
        limit = self._time_limit()
        try:
            locust.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            self.log(f"Locust ran past {limit:.0f} s; stopping it")
            locust.terminate()
            locust.wait(timeout=30)
        return probes

    def _time_limit(self) -> float:
        p = self.params
        if self.scenario == "peak":
            return 120 + len(p["rates"]) * (p["step_seconds"] + 1)
        if self.scenario == "connections":
            return 900
        return 180 + p["send_seconds"] + p["drain_seconds"]

    def _probe_steps(self, fixture: dict, locust: subprocess.Popen, probes: list, sampler: Sampler):
        """At each step of open connections: memory of the servers, and one message delivered to all of them."""
        import redis

        coord = redis.Redis.from_url(fixture["coord_url"])
        announcer = fixture["announcer"]
        client = httpx.Client(base_url=fixture["servers"][0], timeout=30,
                              headers={"Authorization": f"Bearer {announcer['token']}"})
        for n, target in enumerate(self.params["steps"], 1):
            while int(coord.get("connected") or 0) < target:
                if locust.poll() is not None:
                    return
                time.sleep(0.2)
            time.sleep(self.params["settle_seconds"])
            rss = rss_mb(sampler.components["servers"])
            sent_at = time.time()
            answer = client.post("/api/message/send",
                                 json={"group_id": announcer["group_id"], "content": f"probe {n} {sent_at:.6f}"})
            time.sleep(self.params["settle_seconds"])
            probes.append({"probe": n, "connections": int(coord.get("connected") or 0), "server_rss_mb": rss,
                           "sent_at": sent_at, "status": answer.status_code})
            self.log(f"{target} connections open, servers' memory {rss:.0f} MB")
            coord.set(f"probed:{target}", 1)

    def _truth(self, fixture: dict) -> dict:
        """What the database holds at the end: each group's last seq, and the sent messages and AI records."""
        from django.db import connection
        from django.db.models import Count, Sum

        from ai_bridge.models import AIInteractionRecord
        from chat.models import Message
        from groups.models import ChatGroup

        connection.close()
        group_ids = {m["group_id"] for m in fixture["members"]}
        if fixture.get("announcer"):
            group_ids.add(fixture["announcer"]["group_id"])
        last_seq = dict(ChatGroup.objects.filter(group_id__in=group_ids).values_list("group_id", "last_seq"))
        bench_messages = Message.objects.filter(group__group_id__in=group_ids, client_msg_id__startswith="b")
        repeated = (bench_messages.values("group_id", "content").annotate(n=Count("id")).filter(n__gt=1).count())
        group_records = AIInteractionRecord.objects.filter(group__group_id__in=group_ids)
        records = dict(group_records.values_list("status").annotate(n=Count("id")))
        replies_per_message = (Message.objects.filter(group__group_id__in=group_ids, msg_type="AI_REPLY")
                               .values("reply_to").annotate(n=Count("id")))
        return {
            "last_seq": last_seq,
            "stored_bench_messages": bench_messages.count(),
            "stored_twice": repeated,
            "ai_records": records,
            "ai_calls": group_records.aggregate(n=Sum("attempts"))["n"] or 0,
            "ai_replies": sum(r["n"] for r in replies_per_message),
            "ai_messages_answered_twice": sum(1 for r in replies_per_message if r["n"] > 1),
            "patient_messages": bench_messages.filter(from_role="PATIENT").count(),
        }


if __name__ == "__main__":
    sys.exit(main())
