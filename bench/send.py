"""`make bench SCENARIOS=send`: how fast the send path is, HTTP and WebSocket measured apart.

Closed loop, no think time. HTTP sends come from wrk (Debian's package; one wrk per server process, the
connections split between them, each request a new client_msg_id), WebSocket sends from bench.wsload (each
connection sends, waits for its message_ack, sends again). Every member of the groups is connected over
WebSocket the whole time and counts what is pushed to it, so each send also costs its deliveries.

Phases, each on a fresh set of messages: 20 care teams of five and one hot group of five, over HTTP and over
the WebSocket, and once more into the 20 teams over HTTP with nobody connected, right after the same phase with
everybody connected (the difference prices a delivery; the two run back to back, as the machine's speed drifts).
For each: sends/s (from the database: the seqs the groups gained), sends/s per server process, answer latency
percentiles, CPU per send of each component (servers, PostgreSQL, Redis, load generator), deliveries expected,
received, lost and duplicated.

With BENCH_PEERS=1 the same run also starts Matrix Synapse (BENCH_PEER_SCRIPT, default
../shared/peers/synapse-send.sh: one room of five, 100 connections, wrk) once our deployment is stopped,
and reports our one-group HTTP figure against it."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from bench.deploy import (
    Deployment,
    _cpu_and_rss,
    _pids_named,
    machine_cpu,
    machine_probes,
    planner_statistics_refresh,
    rss_mb,
)
from bench.processes import ROOT
from bench.report import machine_text

BARS = {"http_sends_per_s": 600, "websocket_sends_per_s": 1200, "hot_group_sends_per_s": 300,
        "http_server_cpu_ms": 2.0, "websocket_server_cpu_ms": 1.0, "delivery_server_cpu_ms": 0.1}
BAR_TEXT = ("at least 600 HTTP and 1,200 WebSocket sends/s, 300/s into one group; server CPU per send at most "
            "2 ms (HTTP), 1 ms (WebSocket), 0.1 ms per delivery")
DEFAULTS = {"send_seconds": 15, "connections": 100, "teams": 20, "hot_window": 20, "drain_seconds": 2}
WRK_SCRIPT = """
local members = {%(members)s}
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("prefix", "%(tag)s-" .. threads .. "-")  -- a global of the thread's own: client_msg_ids never repeat
end
function request()
  counter = counter + 1
  local m = members[(counter %% #members) + 1]
  local body = '{"group_id":"' .. m[2] .. '","content":"hello world message body","client_msg_id":"' ..
    prefix .. counter .. '"}'
  return wrk.format("POST", "/api/message/send", {["Authorization"] = "Bearer " .. m[1],
    ["Content-Type"] = "application/json"}, body)
end
"""


class SendBench:
    """The `send` scenario: a deployment of `--servers` processes, five phases, one result."""

    def __init__(self, params: dict, args, out_dir: Path, command: str, shared):
        self.params, self.args, self.out_dir, self.command, self.shared = params, args, out_dir, command, shared
        self.work = shared.work / "send"
        self.work.mkdir(parents=True, exist_ok=True)
        self.settings = dict(shared.settings, IM_SEND_RATE="1000000/min", WS_RATE_MESSAGES="1000000",
                             AI_COALESCE_SECONDS="0")

    def log(self, text: str):
        print(f"[bench send] {text}", flush=True)

    def run(self) -> dict:
        from bench.fixture import care_teams

        deployment = Deployment(self.work, database_url=self.shared.database_url, servers=self.args.servers,
                                workers=0, worker_threads=0, ai_latency=0.2, settings=self.settings,
                                asgi_server=self.args.asgi_server)
        deployment.redis_url = self.shared.redis_url
        teams = care_teams("send", patients=self.params["teams"] * 3, ai_enabled=False)
        hot = care_teams("sendhot", patients=3, ai_enabled=False)
        phases = []
        try:
            self.log(f"starting {self.args.servers} servers")
            deployment.start()
            self.servers = deployment.server_urls
            self.components = {"servers": [p.pid for p in deployment.servers],
                               "redis": deployment.components()["redis"] or self.shared.redis.components()["redis"]}
            self._warm_up(teams)
            baseline_rss = rss_mb(self.components["servers"])
            for name, transport, members, listen in (
                    ("http, 20 groups", "http", teams, True),
                    ("http, 20 groups, nobody connected", "http", teams, False),
                    ("http, one group", "http", hot, True), ("websocket, 20 groups", "websocket", teams, True),
                    ("websocket, one group", "websocket", hot, True)):
                phase = self._phase(name, transport, members, listen)
                self.log(f"{name}: {phase['sends_per_s']} sends/s, server CPU {phase['cpu_ms_per_send']['servers']} "
                         f"ms per send, answer p50 {phase['answer_ms'].get('p50')} ms p99 "
                         f"{phase['answer_ms'].get('p99')} ms, lost {phase['deliveries']['lost']}")
                phases.append(phase)
            server_rss = rss_mb(self.components["servers"])
        finally:
            deployment.stop()
        peer = self._peer()
        result = self._result(phases, peer, baseline_rss, server_rss)
        stem = f"{result['date'][:10]}-send"
        (self.out_dir / f"{stem}.json").write_text(json.dumps(result, indent=1))
        (self.out_dir / f"{stem}.md").write_text(markdown(result))
        self.log(f"wrote {stem}.json, {stem}.md")
        print(headline(result), flush=True)
        return result

    def _warm_up(self, members: list[dict]):
        import httpx

        for url in self.servers:
            for member in members[:5]:
                httpx.post(f"{url}/api/message/send", headers={"Authorization": f"Bearer {member['token']}"},
                           json={"group_id": member["group_id"], "content": "warm up"}, timeout=30).raise_for_status()

    # --- one phase ------------------------------------------------------------------------------

    def _phase(self, name: str, transport: str, members: list[dict], listen: bool) -> dict:
        seconds = self.args.duration or self.params["send_seconds"]
        slug = re.sub(r"[^a-z0-9]+", "-", name).strip("-")
        fixture = self.work / f"{slug}.json"
        fixture.write_text(json.dumps({"servers": self.servers, "members": members}))
        stats_path = self.work / f"{slug}-ws.json"
        groups = sorted({m["group_id"] for m in members})
        ws = None
        if listen or transport == "websocket":
            argv = [sys.executable, "-m", "bench.wsload", str(fixture), "--out", str(stats_path)]
            if transport == "websocket":
                argv += ["--send", str(seconds), "--window", str(1 if len(groups) > 1 else self.params["hot_window"])]
            ws = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  start_new_session=True)
            if ws.stdout.readline().strip() != "ready":
                raise RuntimeError("the WebSocket load did not connect")
        load_pids = [ws.pid] if ws else []
        planner_statistics_refresh()
        seq_before = self._seqs(groups)
        cpu_before, machine_before, t0 = self._cpu(load_pids), machine_cpu(), time.time()
        answers: dict = {}
        if transport == "http":
            answers = self._wrk(members, seconds, load_pids)
        else:
            ws.stdin.write("go\n")
            ws.stdin.flush()
            if ws.stdout.readline().strip() != "sent":
                raise RuntimeError("the WebSocket load stopped early")
        elapsed = time.time() - t0
        machine = {k: round((v - machine_before[k]) / elapsed * 100, 1) for k, v in machine_cpu().items()}
        self._settle(groups, ws)
        cpu_after = self._cpu(load_pids)
        stats = {}
        if ws:
            ws.send_signal(signal.SIGTERM)
            ws.wait(timeout=60)
            stats = json.loads(stats_path.read_text())
        stored = sum(self._seqs(groups).values()) - sum(seq_before.values())
        send_seconds = seconds if transport == "websocket" else elapsed
        cpu = {k: round((cpu_after[k] - cpu_before[k]) * 1000 / max(stored, 1), 3) for k in cpu_after}
        if transport == "websocket":
            answers = _answer_stats(stats.get("acks", []), stats.get("errors", {}))
        per_group = len(members) // max(len(groups), 1)
        expected = stored * per_group if listen else 0
        received = stats.get("deliveries", 0)
        return {
            "name": name, "transport": transport, "groups": len(groups), "listeners": len(members) if listen else 0,
            "seconds": round(send_seconds, 1), "stored": stored, "sends_per_s": round(stored / send_seconds, 1),
            "sends_per_s_per_server": round(stored / send_seconds / len(self.servers), 1),
            "answer_ms": answers.get("latency_ms", {}), "errors": answers.get("errors", {}),
            "cpu_ms_per_send": cpu, "cpu_percent": {k: round((cpu_after[k] - cpu_before[k]) / elapsed * 100, 1)
                                                     for k in cpu_after},
            "machine_percent": machine,
            "deliveries": {"expected": expected, "received": received, "lost": max(0, expected - received),
                           "duplicated": stats.get("duplicated", 0),
                           "latency_ms": _percentiles(stats.get("delivery_ms", []))},
        }

    def _wrk(self, members: list[dict], seconds: float, load_pids: list[int]) -> dict:
        members_lua = ", ".join(f"{{{json.dumps(m['token'])}, {json.dumps(m['group_id'])}}}" for m in members)
        per_server = max(1, self.params["connections"] // len(self.servers))
        procs = []
        for n, url in enumerate(self.servers):
            script = self.work / f"send-{n}.lua"
            script.write_text(WRK_SCRIPT % {"members": members_lua, "tag": f"w{time.time_ns() % 10**12}s{n}"})
            procs.append(subprocess.Popen(["wrk", "-t1", f"-c{per_server}", f"-d{seconds:g}s", "--latency", "-s",
                                           str(script), url], stdout=subprocess.PIPE, text=True))
        load_pids += [p.pid for p in procs]
        outputs = [proc.communicate(timeout=seconds + 60)[0] for proc in procs]
        for proc in procs:  # reaped: from now on their CPU is in this process's children's times
            load_pids.remove(proc.pid)
        return _wrk_stats(outputs)

    def _cpu(self, load_pids: list[int]) -> dict:
        pids = dict(self.components, postgresql=_pids_named("postgres"), load=load_pids)
        cpu = {name: sum(_cpu_and_rss(p)[0] for p in group) for name, group in pids.items()}
        reaped = os.times()
        cpu["load"] += reaped.children_user + reaped.children_system  # wrk, once it has exited
        return cpu

    def _settle(self, groups: list[str], ws):
        """Wait until the groups gain no message for a while (the requests still queued when the load stopped
        are answered and pushed), then until the listeners' deliveries stop growing (the pushes still queued
        arrive): a delivery that never comes is lost, a late one is counted with its latency."""
        _until_still(lambda: self._seqs(groups), 0.5)
        if ws is not None:
            _until_still(lambda: self._deliveries(ws), self.params["drain_seconds"])

    @staticmethod
    def _deliveries(ws) -> int:
        ws.stdin.write("count\n")
        ws.stdin.flush()
        return int(ws.stdout.readline())

    @staticmethod
    def _seqs(groups: list[str]) -> dict:
        from django.db import connection

        from groups.models import ChatGroup

        connection.close()
        return dict(ChatGroup.objects.filter(group_id__in=groups).values_list("group_id", "last_seq"))

    # --- the peer -------------------------------------------------------------------------------

    def _peer(self) -> dict | None:
        if os.environ.get("BENCH_PEERS") != "1":
            return None
        script = Path(os.environ.get("BENCH_PEER_SCRIPT", ROOT.parent / "shared" / "peers" / "synapse-send.sh"))
        if not script.exists():
            self.log(f"no peer script at {script}")
            return {"name": "Matrix Synapse", "error": "script not found"}
        self.log(f"peer: {script.name}")
        seconds = self.args.duration or self.params["send_seconds"]
        run = subprocess.run(["bash", str(script), f"{seconds:g}"], capture_output=True, text=True, timeout=1800,
                             check=False)
        found = re.search(r"Requests/sec:\s+([\d.]+)", run.stdout)
        if not found:
            return {"name": "Matrix Synapse", "error": (run.stdout + run.stderr)[-2000:]}
        return {"name": "Matrix Synapse", "sends_per_s": float(found.group(1)), "output": run.stdout.strip()}

    # --- the result -----------------------------------------------------------------------------

    def _result(self, phases: list[dict], peer: dict | None, baseline_rss: float, server_rss: float) -> dict:
        by = {p["name"]: p for p in phases}
        http, ws = by["http, 20 groups"], by["websocket, 20 groups"]
        hot = by["http, one group"]
        quiet = by["http, 20 groups, nobody connected"]
        per_send = http["deliveries"]["expected"] / max(http["stored"], 1)
        delivery_ms = round((http["cpu_ms_per_send"]["servers"] - quiet["cpu_ms_per_send"]["servers"])
                            / max(per_send, 1), 3)
        figures = {"http_sends_per_s": http["sends_per_s"], "websocket_sends_per_s": ws["sends_per_s"],
                   "hot_group_sends_per_s": min(hot["sends_per_s"], by["websocket, one group"]["sends_per_s"]),
                   "http_server_cpu_ms": http["cpu_ms_per_send"]["servers"],
                   "websocket_server_cpu_ms": ws["cpu_ms_per_send"]["servers"],
                   "delivery_server_cpu_ms": delivery_ms}
        met = {k: (figures[k] >= bar if k.endswith("per_s") else figures[k] <= bar) for k, bar in BARS.items()}
        integrity = {"lost": sum(p["deliveries"]["lost"] for p in phases),
                     "duplicated": sum(p["deliveries"]["duplicated"] for p in phases),
                     "errors": sum(sum(p["errors"].values()) for p in phases)}
        integrity["ok"] = integrity["lost"] == 0 and integrity["duplicated"] == 0
        if peer and peer.get("sends_per_s"):
            peer["ours_one_group_http"] = hot["sends_per_s"]
            peer["ratio"] = round(hot["sends_per_s"] / peer["sends_per_s"], 2)
        return {"scenario": "send", "date": datetime.now().isoformat(timespec="seconds"), "bar": BAR_TEXT,
                "met": all(met.values()), "bars": met, "figures": figures, "phases": phases, "peer": peer,
                "integrity": integrity, "server_rss_mb": {"before": round(baseline_rss, 1),
                                                          "after": round(server_rss, 1)},
                "config": {"servers": len(self.servers), "asgi_server": self.args.asgi_server,
                           "connections": self.params["connections"],
                           "cpus": os.cpu_count(), **machine_probes()},
                "command": self.command}


def _percentiles(values: list[float]) -> dict:
    import numpy as np

    if not values:
        return {}
    arr = np.asarray(values, dtype=float)
    return {f"p{q}": round(float(np.percentile(arr, q)), 1) for q in (50, 90, 99)} | {"max": round(float(arr.max()), 1)}


def _answer_stats(acks: list, errors: dict) -> dict:
    return {"latency_ms": _percentiles([ms for _, ms in acks]), "errors": errors}


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _wrk_stats(outputs: list[str]) -> dict:
    """wrk's latency distribution (the slowest process's percentiles) and its non-2xx answers and socket errors."""
    latency: dict = {}
    errors: dict = {}
    for text in outputs:
        for q, value, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE):
            ms = round(float(value) * _UNITS[unit], 1)
            latency[f"p{q}"] = max(latency.get(f"p{q}", 0), ms)
        for kind, n in re.findall(r"(Non-2xx or 3xx responses): (\d+)", text):
            errors[kind] = errors.get(kind, 0) + int(n)
        socket_errors = re.search(r"Socket errors: (.*)", text)
        if socket_errors:
            errors["socket errors"] = errors.get("socket errors", "") + socket_errors.group(1)
    return {"latency_ms": latency, "errors": errors}


def headline(result: dict) -> str:
    f, b = result["figures"], result["bars"]
    mark = {True: "met", False: "NOT met"}
    lines = [f"== send: {'bar met' if result['met'] else 'bar NOT met'} ({result['bar']})"]
    lines.append(f"   HTTP {f['http_sends_per_s']} sends/s ({mark[b['http_sends_per_s']]}), server CPU "
                 f"{f['http_server_cpu_ms']} ms per send ({mark[b['http_server_cpu_ms']]})")
    lines.append(f"   WebSocket {f['websocket_sends_per_s']} sends/s ({mark[b['websocket_sends_per_s']]}), server "
                 f"CPU {f['websocket_server_cpu_ms']} ms per send ({mark[b['websocket_server_cpu_ms']]})")
    lines.append(f"   one group {f['hot_group_sends_per_s']} sends/s ({mark[b['hot_group_sends_per_s']]}); a "
                 f"delivery {f['delivery_server_cpu_ms']} ms of server CPU ({mark[b['delivery_server_cpu_ms']]})")
    peer = result.get("peer")
    if peer and peer.get("ratio"):
        lines.append(f"   Matrix Synapse {peer['sends_per_s']} sends/s into one room: ours {peer['ratio']}x")
    i = result["integrity"]
    lines.append(f"   lost {i['lost']}, duplicated {i['duplicated']}, errors {i['errors']}")
    return "\n".join(lines)


def _until_still(read, interval: float, limit: float = 60):
    """Read until two readings `interval` apart agree (at most `limit` seconds)."""
    last, deadline = None, time.monotonic() + limit
    while time.monotonic() < deadline:
        now = read()
        if now == last:
            return
        last = now
        time.sleep(interval)


def markdown(result: dict) -> str:
    rows = [("| phase | sends/s | per server | answer p50 / p90 / p99 ms | server ms/send | PostgreSQL | Redis | "
             "load | deliveries (lost, dup) | delivery p50 / p99 ms | machine busy / stolen % |"),
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in result["phases"]:
        a, c, d = p["answer_ms"], p["cpu_ms_per_send"], p["deliveries"]
        rows.append(f"| {p['name']} | {p['sends_per_s']} | {p['sends_per_s_per_server']} | {a.get('p50')} / "
                    f"{a.get('p90')} / {a.get('p99')} | {c['servers']} | {c['postgresql']} | {c['redis']} | "
                    f"{c['load']} | {d['received']}/{d['expected']} ({d['lost']}, {d['duplicated']}) | "
                    f"{d['latency_ms'].get('p50')} / {d['latency_ms'].get('p99')} | "
                    f"{p.get('machine_percent', {}).get('busy')} / {p.get('machine_percent', {}).get('stolen')} |")
    peer = result.get("peer")
    peer_text = ""
    if peer:
        peer_text = (f"\nMatrix Synapse, same run, one room of five, 100 connections: {peer.get('sends_per_s')} "
                     f"sends/s; ours into one group of five over HTTP: {peer.get('ours_one_group_http')} "
                     f"({peer.get('ratio')}x).\n" if peer.get("ratio") else f"\nPeer: {peer.get('error')}\n")
    noise = (" (below zero: within the noise between the two phases)"
             if result["figures"]["delivery_server_cpu_ms"] < 0 else "")
    bars = "\n".join(f"- {k}: {result['figures'][k]} (bar {BARS[k]}): {'met' if v else 'NOT met'}"
                     for k, v in result["bars"].items())
    return (f"# send, {result['date']}\n\n`{result['command']}` on {result['config']['cpus']} cores, "
            f"{result['config']['servers']} server processes "
            f"({result['config'].get('asgi_server', 'daphne')}), {result['config']['connections']} connections.\n\n"
            f"Bar: {result['bar']}.\n\n{bars}\n\nCPU columns are milliseconds per stored message.\n\n"
            + "\n".join(rows) + "\n" + peer_text +
            f"\nServers' memory {result['server_rss_mb']['before']} MB before, {result['server_rss_mb']['after']} "
            f"MB after. Integrity: lost {result['integrity']['lost']}, duplicated "
            f"{result['integrity']['duplicated']}, errors {result['integrity']['errors']}.\n\n"
            f"A delivery's server CPU is the first two phases' difference per delivery{noise}.\n\n"
            + machine_text(result["config"], None, "; the last column is its whole CPU while sending (100 % = one "
                                                   "core), busy and stolen by the hypervisor") + "\n")
