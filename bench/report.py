"""Turn what Locust's users measured into the results: JSON, a Markdown summary and PNG charts."""
import json
import platform
from datetime import datetime
from pathlib import Path

import numpy as np
import redis

from bench.deploy import machine_probes

BARS = {
    "seed": "send p95 < 25 ms, delivery p99 < 50 ms, 0 lost, 0 duplicated",
    "peak": "at least 600 messages/s sustained, each delivered to its 4 other members",
    "connections": "5,000 idle WebSockets held, memory per connection reported",
    "ai": "every patient message answered once, IM overhead p95 < 100 ms",
    "send": "600 HTTP and 1,200 WebSocket sends/s, 300/s into one group; server CPU per send 2 ms HTTP, 1 ms WS",
}
COMPONENTS = ["servers", "workers", "postgresql", "redis", "ai_service", "load"]


def pct(values, *qs) -> dict:
    """Percentiles in ms, rounded; empty input gives None."""
    if len(values) == 0:
        return {f"p{q:g}": None for q in qs} | {"max": None, "count": 0}
    arr = np.asarray(values, dtype=float)
    out = {f"p{q:g}": round(float(np.percentile(arr, q)), 1) for q in qs}
    return out | {"max": round(float(arr.max()), 1), "count": int(arr.size)}


def _load_samples(samples_dir: Path) -> dict:
    merged = {"sends": [], "deliveries": [], "ai": [], "ai_first_delta": [], "probes": [], "connections": [],
              "errors": {}, "unanswered_ai": 0, "gc_longest_ms": 0.0}
    for path in sorted(samples_dir.glob("samples-*.json")):
        part = json.loads(path.read_text())
        for key in ("sends", "deliveries", "ai", "ai_first_delta", "probes", "connections"):
            merged[key] += part.get(key, [])
        for kind, n in part["errors"].items():
            merged["errors"][kind] = merged["errors"].get(kind, 0) + n
        merged["unanswered_ai"] += part["unanswered_ai"]
        merged["gc_longest_ms"] = max(merged["gc_longest_ms"], part.get("gc_longest_ms", 0.0))
    return merged


def _integrity(samples: dict, truth: dict) -> dict:
    expected = unique = duplicated = out_of_order = 0
    for connection in samples["connections"]:
        for group_id, (baseline, seen, dup, ooo) in connection.items():
            expected += truth["last_seq"].get(group_id, 0) - baseline
            unique += seen
            duplicated += dup
            out_of_order += ooo
    acknowledged = sum(1 for s in samples["sends"] if s[3])
    return {
        "connections": len(samples["connections"]), "expected_deliveries": expected, "received": unique,
        "lost": expected - unique, "duplicated": duplicated, "out_of_order": out_of_order,
        "acknowledged_sends": acknowledged, "stored_bench_messages": truth["stored_bench_messages"],
        "stored_twice": truth["stored_twice"],
    }


def _timeline(samples: dict, t0: float, t_end: float) -> list[dict]:
    seconds = max(1, int(t_end - t0) + 1)
    sends = [[] for _ in range(seconds)]
    deliveries = [[] for _ in range(seconds)]
    ai = [[] for _ in range(seconds)]
    for at, ms, _, ok in samples["sends"]:
        if ok and 0 <= at - t0 < seconds:
            sends[int(at - t0)].append(ms)
    for at, ms in samples["deliveries"]:
        if 0 <= at - t0 < seconds:
            deliveries[int(at - t0)].append(ms)
    for at, ms in samples["ai"]:
        if 0 <= at - t0 < seconds:
            ai[int(at - t0)].append(ms)
    rows = []
    for i in range(seconds):
        s, d, a = pct(sends[i], 50, 95, 99), pct(deliveries[i], 50, 99), pct(ai[i], 50, 95)
        rows.append({"t": i, "messages": s["count"], "deliveries": d["count"], "send_p50": s["p50"],
                     "send_p95": s["p95"], "send_p99": s["p99"], "delivery_p50": d["p50"], "delivery_p99": d["p99"],
                     "ai_p50": a["p50"], "ai_p95": a["p95"], "ai_replies": a["count"]})
    return rows


def _resources(resources: list[dict], start: float, end: float) -> dict:
    window = [r for r in resources if start <= r["t"] <= end] or resources
    if not window:
        return {}
    return {
        "cpu_percent_mean": {k: round(float(np.mean([r["cpu_percent"].get(k, 0) for r in window])), 1)
                             for k in COMPONENTS if any(k in r["cpu_percent"] for r in window)},
        "rss_mb_max": {k: round(max(r["rss_mb"].get(k, 0) for r in window), 1)
                       for k in COMPONENTS if any(k in r["rss_mb"] for r in window)},
        "machine_percent_mean": {k: round(float(np.mean([r["machine_percent"][k] for r in window])), 1)
                                 for k in ("busy", "stolen") if all("machine_percent" in r for r in window)},
    }


# `peak`: the rate whose step must be sustained, and the share of a step's target rate that keeps its pace.
PEAK_BAR_PER_S = 600
KEPT_PACE = 0.99


def _peak_steps(coord, samples: dict, params: dict, t0: float) -> list[dict]:
    steps = []
    for raw in coord.lrange("steps", 0, -1):
        step = json.loads(raw)
        start, end = step["start"] + 2.0, step["end"]  # the first 2 s settle from the previous rate
        span = max(0.001, end - start)
        sent = [s for s in samples["sends"] if start <= s[0] < end]
        ok = [s for s in sent if s[3]]
        delivered = [ms for at, ms in samples["deliveries"] if start <= at - ms / 1000 < end]
        send, delivery = pct([s[1] for s in ok], 50, 95, 99), pct(delivered, 50, 99)
        achieved = len(ok) / span
        # The load generator paces each step to its target; what one step's window counts of it varies by a few
        # sends either way (598.0-601.2 at 600/s in steps whose every send was answered on time). A step kept
        # pace when it reached KEPT_PACE of its target: short of that, the servers fell behind.
        steps.append({
            "target_per_s": step["rate"], "from_s": round(step["start"] - t0, 1), "to_s": round(end - t0, 1),
            "messages_per_s": round(achieved, 1),
            "deliveries_per_s": round(len(delivered) / span, 1), "errors": len(sent) - len(ok),
            "send_ms": send, "delivery_ms": delivery,
            "sustained": achieved >= KEPT_PACE * step["rate"] and len(sent) == len(ok)
            and (delivery["p99"] or 0) <= params["p99_limit_ms"],
        })
    return steps


def analyse(*, scenario, params, fixture, samples_dir, truth, resources, probes, baseline_rss, started, config,
            command, coord_url) -> dict:
    samples = _load_samples(Path(samples_dir))
    coord = redis.Redis.from_url(coord_url)
    go = coord.get("go")
    t0 = float(go) if go else started
    ends = [s[0] + s[1] / 1000 for s in samples["sends"]] + [d[0] for d in samples["deliveries"]] + \
           [p[1] for p in samples["probes"]] + [r["t"] for r in resources[-1:]]
    t_end = max(ends) if ends else t0 + 1
    send_span = params.get("send_seconds") or max(1.0, t_end - t0)
    ok_sends = [s for s in samples["sends"] if s[3]]
    integrity = _integrity(samples, truth)
    result = {
        "scenario": scenario, "date": datetime.now().strftime("%Y-%m-%d %H:%M"), "command": command,
        "bar": BARS[scenario],
        "machine": {"cpus": _cpus(), "python": platform.python_version(), "system": platform.platform(terse=True),
                    **machine_probes()},
        "config": config | {"users": len(fixture["members"]), "params": params},
        "sends": {
            "attempted": len(samples["sends"]), "acknowledged": len(ok_sends),
            "answer_ms": pct([s[1] for s in ok_sends], 50, 95, 99),
            "answer_ms_http": pct([s[1] for s in ok_sends if s[2] == "http"], 50, 95, 99),
            "answer_ms_ws": pct([s[1] for s in ok_sends if s[2] == "ws"], 50, 95, 99),
        },
        "delivery_ms": pct([d[1] for d in samples["deliveries"]], 50, 95, 99),
        "throughput": {"messages_per_s": round(len(ok_sends) / send_span, 1),
                       "deliveries_per_s": round(len(samples["deliveries"]) / send_span, 1)},
        "errors": samples["errors"],
        "integrity": integrity,
        # The load generator's longest garbage collection: a pause its connections' readings all include.
        "load_gc_longest_ms": round(samples["gc_longest_ms"], 1),
        "resources": _resources(resources, t0, t0 + send_span),
        "timeline": _timeline(samples, t0, t_end),
        "resource_timeline": [{**r, "t": round(r["t"] - t0, 1)} for r in resources],
    }
    problems = integrity["lost"] or integrity["duplicated"] or integrity["out_of_order"] or integrity["stored_twice"] \
        or integrity["stored_bench_messages"] < integrity["acknowledged_sends"]
    if scenario == "peak":
        result["steps"] = _peak_steps(coord, samples, params, t0)
        sustained = [s for s in result["steps"] if s["sustained"]]
        best = max(sustained, key=lambda s: s["messages_per_s"]) if sustained else None
        result["peak"] = {"messages_per_s": best["messages_per_s"] if best else 0,
                          "deliveries_per_s": best["deliveries_per_s"] if best else 0,
                          "at_target": best["target_per_s"] if best else None}
        result["met"] = any(s["target_per_s"] >= PEAK_BAR_PER_S for s in sustained)
    elif scenario == "connections":
        result["connections"] = _connection_steps(samples, probes, baseline_rss)
        last = result["connections"][-1] if result["connections"] else {}
        problems = problems or any(s["received"] < s["connections"] for s in result["connections"])
        result["met"] = last.get("connections", 0) >= 5000 and not problems
    elif scenario == "ai":
        patient_messages = truth["patient_messages"]
        result["ai"] = {
            "overhead_ms": pct([a[1] for a in samples["ai"]], 50, 95, 99),
            # Streamed answers: the first text a patient sees, minus when the service sends its first piece.
            "first_delta_overhead_ms": pct([a[1] for a in samples["ai_first_delta"]], 50, 95, 99),
            "patient_messages": patient_messages, "replies_received": len(samples["ai"]),
            "replies_stored": truth["ai_replies"], "answered_twice": truth["ai_messages_answered_twice"],
            "unanswered_when_stopped": samples["unanswered_ai"], "records": truth["ai_records"],
            "ai_latency_s": params["ai_latency"], "burst": params.get("burst", 1),
            "coalesce_seconds": params.get("coalesce_seconds", 0.0),
            "ai_calls": truth.get("ai_calls", 0),
            "calls_per_patient_message": round(truth.get("ai_calls", 0) / patient_messages, 3) if patient_messages
            else None,
        }
        # Every patient message is answered once: by its own reply, or by the reply to a later one of its burst.
        settled = truth["ai_records"].get("SUCCESS", 0) + truth["ai_records"].get("COALESCED", 0)
        answered_once = settled == patient_messages and truth["ai_replies"] == truth["ai_records"].get("SUCCESS", 0) \
            and truth["ai_messages_answered_twice"] == 0
        problems = problems or not answered_once
        result["met"] = answered_once and (result["ai"]["overhead_ms"]["p95"] or 1e9) < 100
    else:
        result["met"] = (result["sends"]["answer_ms"]["p95"] or 1e9) < 25 and \
            (result["delivery_ms"]["p99"] or 1e9) < 50 and not problems
    integrity["ok"] = not problems and not any(k.startswith("send") for k in samples["errors"])
    return result


def _connection_steps(samples: dict, probes: list[dict], baseline_rss: float) -> list[dict]:
    steps = []
    for probe in probes:
        latencies = [ms for n, _, ms in samples["probes"] if n == probe["probe"]]
        held = probe["connections"]
        grown = probe["server_rss_mb"] - baseline_rss
        steps.append({"connections": held, "server_rss_mb": round(probe["server_rss_mb"], 1),
                      "kb_per_connection": round(grown * 1024 / held, 1) if held else None,
                      "received": len(latencies), "delivery_ms": pct(latencies, 50, 99)})
    return steps


def machine_text(machine: dict, percent: dict | None, then: str = "") -> str:
    """The machine's state in one sentence: its speed just after the run, and its whole CPU while sending (or
    `then`, what the caller reports of it instead)."""
    text = (f"The machine: 10 million Python additions took {machine.get('speed_probe_s')} s just after the run, "
            f"and a loopback TCP round trip between two processes {machine.get('loopback_round_trip_us')} µs")
    if percent:
        text += (f"; while sending, {percent['busy']} % busy of {100 * machine['cpus']} % and {percent['stolen']} % "
                 "stolen by the hypervisor")
    return text + then + "."


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def headline(result: dict) -> str:
    s, i = result["scenario"], result["integrity"]
    lines = [f"== {s}: {'bar met' if result['met'] else 'bar NOT met'} ({result['bar']})"]
    if s == "peak":
        p = result["peak"]
        lines.append(f"   sustained {p['messages_per_s']} messages/s, {p['deliveries_per_s']} deliveries/s")
    elif s == "connections":
        for step in result["connections"]:
            lines.append(f"   {step['connections']} open: {step['kb_per_connection']} KB each, one message reached "
                         f"{step['received']} in p50 {step['delivery_ms']['p50']} ms, max {step['delivery_ms']['max']} ms")
    else:
        lines.append(f"   send p50 {result['sends']['answer_ms']['p50']} ms p95 {result['sends']['answer_ms']['p95']} ms;"
                     f" delivery p50 {result['delivery_ms']['p50']} ms p99 {result['delivery_ms']['p99']} ms;"
                     f" {result['throughput']['messages_per_s']} messages/s")
    if s == "ai":
        a = result["ai"]
        first = a.get("first_delta_overhead_ms", {})
        lines.append(f"   first streamed text overhead p50 {first.get('p50')} ms p95 {first.get('p95')} ms")
        lines.append(f"   AI overhead p50 {a['overhead_ms']['p50']} ms p95 {a['overhead_ms']['p95']} ms; "
                     f"{a['replies_stored']} replies to {a['patient_messages']} patient messages; "
                     f"{a.get('calls_per_patient_message')} AI calls per patient message (bursts of {a.get('burst', 1)})")
    lines.append(f"   lost {i['lost']}, duplicated {i['duplicated']}, out of order {i['out_of_order']}, "
                 f"errors {result['errors'] or 0}")
    return "\n".join(lines)


# --- files ----------------------------------------------------------------------------------------

def write(result: dict, out_dir: Path, charts: bool = True) -> list[Path]:
    stem = f"{result['date'][:10]}-{result['scenario']}"
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.md"]
    paths[0].write_text(json.dumps(result, indent=1))
    pngs = _charts(result, out_dir, stem) if charts else []
    paths[1].write_text(markdown(result, [p.name for p in pngs]))
    return paths + pngs


def _ms(v) -> str:
    return "–" if v is None else f"{v:g}"


def markdown(result: dict, images: list[str]) -> str:
    s, i, r = result["scenario"], result["integrity"], result.get("resources", {})
    out = [f"# Benchmark `{s}`, {result['date']}", "",
           f"Bar: {result['bar']}. **{'Met' if result['met'] else 'Not met'}.**", "",
           f"Command: `{result['command']}` ({result['machine']['cpus']} CPUs, Python {result['machine']['python']}; "
           f"{result['config']['servers']} {result['config'].get('asgi_server', 'daphne')} servers, "
           f"{result['config']['workers']} Celery workers, "
           f"{result['config']['users']} Locust users)", ""]
    if s in ("seed", "ai", "peak"):
        a = result["sends"]
        out += ["| measure | p50 | p95 | p99 | max | count |", "|---|---|---|---|---|---|"]
        rows = [("send answer (all), ms", a["answer_ms"]), ("send answer (HTTP), ms", a["answer_ms_http"]),
                ("send answer (WebSocket), ms", a["answer_ms_ws"]), ("delivery to each other member, ms",
                                                                     result["delivery_ms"])]
        if s == "ai":
            rows.append(("AI reply minus the AI's own latency, ms", result["ai"]["overhead_ms"]))
            rows.append(("first streamed text minus the service's first piece, ms",
                         result["ai"].get("first_delta_overhead_ms", {})))
        for name, p in rows:
            out.append(f"| {name} | {_ms(p.get('p50'))} | {_ms(p.get('p95'))} | {_ms(p.get('p99'))} | "
                       f"{_ms(p.get('max'))} | {p.get('count')} |")
        out += ["", f"Throughput over the sending time: {result['throughput']['messages_per_s']} messages/s, "
                    f"{result['throughput']['deliveries_per_s']} deliveries/s.", ""]
    if s == "peak":
        out += ["| target msg/s | achieved msg/s | deliveries/s | send p95 ms | delivery p99 ms | errors | sustained |",
                "|---|---|---|---|---|---|---|"]
        for step in result["steps"]:
            out.append(f"| {step['target_per_s']} | {step['messages_per_s']} | {step['deliveries_per_s']} | "
                       f"{_ms(step['send_ms']['p95'])} | {_ms(step['delivery_ms']['p99'])} | {step['errors']} | "
                       f"{'yes' if step['sustained'] else 'no'} |")
        p = result["peak"]
        out += ["", f"Highest sustained: **{p['messages_per_s']} messages/s, {p['deliveries_per_s']} deliveries/s** "
                    "(delivery p99 within the limit, no errors).", ""]
    if s == "connections":
        out += ["| open WebSockets | servers' resident MB | KB per connection | received the probe | "
                "probe delivery p50 ms | max ms |", "|---|---|---|---|---|---|"]
        for step in result["connections"]:
            out.append(f"| {step['connections']} | {step['server_rss_mb']} | {_ms(step['kb_per_connection'])} | "
                       f"{step['received']} | {_ms(step['delivery_ms']['p50'])} | {_ms(step['delivery_ms']['max'])} |")
        out.append("")
    if s == "ai":
        a = result["ai"]
        out += [f"AI: {a['patient_messages']} patient messages in bursts of {a.get('burst', 1)}, "
                f"{a.get('ai_calls')} AI calls ({a.get('calls_per_patient_message')} per patient message), "
                f"{a['replies_stored']} replies stored, {a['answered_twice']} answered twice, records {a['records']}; "
                f"the AI service answers in {a['ai_latency_s']} s, bursts coalesce within "
                f"{a.get('coalesce_seconds', 0)} s (not counted in the overhead).", ""]
    out += [f"Integrity: {i['expected_deliveries']} deliveries expected on {i['connections']} connections, "
            f"{i['received']} received; lost {i['lost']}, duplicated {i['duplicated']}, out of order "
            f"{i['out_of_order']}; {i['acknowledged_sends']} sends acknowledged, {i['stored_bench_messages']} stored, "
            f"{i['stored_twice']} stored twice. Errors: {result['errors'] or 'none'}.", ""]
    if result.get("load_gc_longest_ms") is not None:
        out += [f"The load generator's longest garbage collection: {result['load_gc_longest_ms']} ms (every "
                "reading it took then waited that long).", ""]
    if r:
        out += ["Mean CPU while sending (100 % = one core): " + ", ".join(
            f"{k} {v} %" for k, v in r["cpu_percent_mean"].items()) + ".", "",
            "Largest resident memory: " + ", ".join(f"{k} {v} MB" for k, v in r["rss_mb_max"].items()) + ".", ""]
    out += [machine_text(result["machine"], (r or {}).get("machine_percent_mean")), ""]
    out += [f"![{name}]({name})" for name in images]
    return "\n".join(out) + "\n"


def _charts(result: dict, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    timeline = result["timeline"]
    t = [row["t"] for row in timeline]
    if result["scenario"] != "connections":
        fig, ax = plt.subplots(figsize=(10, 5))
        series = [("send_p50", "send p50"), ("send_p95", "send p95"), ("send_p99", "send p99"),
                  ("delivery_p50", "delivery p50"), ("delivery_p99", "delivery p99")]
        if result["scenario"] == "ai":
            series += [("ai_p50", "AI overhead p50"), ("ai_p95", "AI overhead p95")]
        for key, label in series:
            points = [(row["t"], row[key]) for row in timeline if row[key] is not None]
            if points:
                ax.plot(*zip(*points), label=label, linewidth=1.2)
        ax.set_yscale("log")
        ax.set_xlabel("seconds since sending started")
        ax.set_ylabel("ms (log scale)")
        ax.set_title(f"{result['scenario']}: latency percentiles per second")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        paths.append(_save(fig, out_dir / f"{stem}-latency.png"))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    top.plot(t, [row["messages"] for row in timeline], label="messages/s acknowledged")
    top.plot(t, [row["deliveries"] for row in timeline], label="deliveries/s to other members")
    if result["scenario"] == "peak":
        for n, step in enumerate(result["steps"]):
            top.hlines(step["target_per_s"], step["from_s"], step["to_s"], colors="black", linestyles="dotted",
                       label="target messages/s" if n == 0 else None)
    top.set_ylabel("per second")
    top.set_title(f"{result['scenario']}: throughput, and CPU by component")
    top.grid(True, alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    res = result["resource_timeline"]
    if res:
        rt = [r["t"] for r in res]
        names = [k for k in COMPONENTS if any(r["cpu_percent"].get(k) for r in res)]
        bottom.stackplot(rt, *[[r["cpu_percent"].get(k, 0) for r in res] for k in names], labels=names, alpha=0.8)
        bottom.axhline(100 * result["machine"]["cpus"], color="black", linewidth=0.8, linestyle="--")
        bottom.legend(loc="upper left", fontsize=8, ncol=3)
    bottom.set_ylabel("CPU % (100 = one core)")
    bottom.set_xlabel("seconds since sending started" if result["scenario"] != "connections" else "seconds")
    bottom.grid(True, alpha=0.3)
    paths.append(_save(fig, out_dir / f"{stem}-throughput.png"))
    if result["scenario"] == "connections" and result["connections"]:
        steps = result["connections"]
        fig, left = plt.subplots(figsize=(9, 5))
        n = [s["connections"] for s in steps]
        left.plot(n, [s["server_rss_mb"] for s in steps], "o-", label="servers' resident MB")
        left.set_xlabel("open WebSockets")
        left.set_ylabel("MB")
        right = left.twinx()
        right.plot(n, [s["delivery_ms"]["max"] for s in steps], "s--", color="tab:red",
                   label="one message to all: last arrival, ms")
        right.plot(n, [s["delivery_ms"]["p50"] for s in steps], "^--", color="tab:orange", label="... median, ms")
        right.set_ylabel("ms")
        fig.legend(loc="lower right", bbox_to_anchor=(0.88, 0.12), fontsize=8)
        left.set_title("connections: memory and broadcast time by open WebSockets")
        left.grid(True, alpha=0.3)
        paths.append(_save(fig, out_dir / f"{stem}-connections.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def write_summary(out_dir: Path) -> Path:
    """`SUMMARY.md`: the latest result of each scenario in the folder, one line each."""
    latest = {}
    for path in sorted(out_dir.glob("*.json")):
        result = json.loads(path.read_text())
        latest[result["scenario"]] = (path, result)
    lines = ["# Latest benchmark results", "", "| scenario | date | bar | met | headline | details |",
             "|---|---|---|---|---|---|"]
    for scenario in BARS:
        if scenario not in latest:
            continue
        path, r = latest[scenario]
        if scenario == "peak":
            head = f"{r['peak']['messages_per_s']} msg/s, {r['peak']['deliveries_per_s']} deliveries/s sustained"
        elif scenario == "connections":
            last = r["connections"][-1] if r["connections"] else {}
            head = (f"{last.get('connections')} open, {last.get('kb_per_connection')} KB each, broadcast max "
                    f"{last.get('delivery_ms', {}).get('max')} ms")
        elif scenario == "send":
            f = r["figures"]
            head = (f"HTTP {f['http_sends_per_s']}/s at {f['http_server_cpu_ms']} ms, WebSocket "
                    f"{f['websocket_sends_per_s']}/s at {f['websocket_server_cpu_ms']} ms, one group "
                    f"{f['hot_group_sends_per_s']}/s")
        elif scenario == "ai":
            head = (f"overhead p95 {r['ai']['overhead_ms']['p95']} ms, {r['ai']['replies_stored']}/"
                    f"{r['ai']['patient_messages']} answered")
        else:
            head = f"send p95 {r['sends']['answer_ms']['p95']} ms, delivery p99 {r['delivery_ms']['p99']} ms"
        head += f"; lost {r['integrity']['lost']}, duplicated {r['integrity']['duplicated']}"
        lines.append(f"| {scenario} | {r['date']} | {r['bar']} | {'yes' if r['met'] else 'no'} | {head} | "
                     f"[{path.stem}.md]({path.stem}.md) |")
    summary = out_dir / "SUMMARY.md"
    summary.write_text("\n".join(lines) + "\n")
    return summary
