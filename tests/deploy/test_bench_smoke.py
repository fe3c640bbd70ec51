"""The benchmark cannot rot: a 10-second `seed` run with 10 users, and a `send` run of 2-second phases, run end to
end and lose nothing.

Only that it ran and lost nothing is asserted; the timings are the benchmark's business, not the tests'."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support.live import ROOT, needs_real_services

pytestmark = [pytest.mark.e2e, needs_real_services()]


@pytest.fixture
def bench_database():
    """The benchmark's own database on the test server, dropped afterwards."""
    from bench.run import bench_database_url, recreate_database

    name = f"im_bench_smoke_{os.getpid()}"
    yield name
    recreate_database(bench_database_url(name), create=False)


def bench(tmp_path, database: str, scenario: str, *args: str, timeout: float) -> dict:
    """Run `python -m bench.run` on the benchmark's own database; the scenario's result."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV_")}
    env["BENCH_DATABASE_NAME"] = database
    run = subprocess.run([sys.executable, "-m", "bench.run", scenario, *args, "--out", str(tmp_path)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return json.loads(next(tmp_path.glob(f"*-{scenario}.json")).read_text())


def test_seed_smoke_runs_and_loses_nothing(tmp_path, bench_database):
    result = bench(tmp_path, bench_database, "seed", "--users", "10", "--duration", "10", timeout=240)
    integrity = result["integrity"]
    assert result["config"]["users"] == 10
    assert result["sends"]["acknowledged"] == result["sends"]["attempted"] > 0
    assert integrity["connections"] == 10
    assert integrity["received"] == integrity["expected_deliveries"] > 0
    assert (integrity["lost"], integrity["duplicated"], integrity["out_of_order"]) == (0, 0, 0)
    assert integrity["stored_bench_messages"] == integrity["acknowledged_sends"]
    assert integrity["stored_twice"] == 0
    assert {p.suffix for p in tmp_path.iterdir()} >= {".json", ".md", ".png"}
    assert "seed" in (tmp_path / "SUMMARY.md").read_text()
    # the machine's state, so that two runs compare only when their machines were alike
    assert result["machine"]["speed_probe_s"] > 0 and result["machine"]["loopback_round_trip_us"] > 0
    assert result["resources"]["machine_percent_mean"]["busy"] > 0
    assert "10 million Python additions took" in next(tmp_path.glob("*-seed.md")).read_text()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="the send scenario's HTTP load is wrk (make deploy-tools)")
def test_send_smoke_runs_every_phase_and_loses_nothing(tmp_path, bench_database):
    result = bench(tmp_path, bench_database, "send", "--duration", "2", "--servers", "1", timeout=300)
    phases = {p["name"]: p for p in result["phases"]}
    assert set(phases) == {"http, 20 groups", "http, one group", "websocket, 20 groups", "websocket, one group",
                           "http, 20 groups, nobody connected"}
    for phase in phases.values():
        assert phase["stored"] > 0 and phase["errors"] in ({}, {"Non-2xx or 3xx responses": 0}), phase
        assert phase["cpu_ms_per_send"]["servers"] > 0
        assert phase["machine_percent"]["busy"] > 0
        if phase["listeners"]:
            assert phase["deliveries"]["received"] == phase["deliveries"]["expected"] == phase["stored"] * 5
    assert result["integrity"] == {"lost": 0, "duplicated": 0, "errors": 0, "ok": True}
    assert "send" in (tmp_path / "SUMMARY.md").read_text()
    assert result["config"]["speed_probe_s"] > 0 and result["config"]["loopback_round_trip_us"] > 0
    # a delivery is priced by the two HTTP phases into the 20 teams, run back to back
    names = [p["name"] for p in result["phases"]]
    assert names[:2] == ["http, 20 groups", "http, 20 groups, nobody connected"]
    assert "difference per delivery" in next(tmp_path.glob("*-send.md")).read_text()
    assert "10 million Python additions took" in next(tmp_path.glob("*-send.md")).read_text()
