"""The kept benchmark results stay readable: `make bench` ends by summing up every result in bench/results, and one
file it cannot read fails the whole run after its minutes of load. A result records the command that made it,
without a folder of the machine it ran on."""
import json
import shutil

from bench import report
from bench.processes import ROOT
from bench.run import recorded_command

RESULTS = ROOT / "bench" / "results"


def test_every_kept_result_is_json_and_the_summary_reads_them_all(tmp_path):
    kept = sorted(RESULTS.glob("*.json"))
    assert kept
    for path in kept:
        result = json.loads(path.read_text())
        assert result["scenario"] and result["command"].startswith("python -m bench.run"), path.name
        shutil.copy(path, tmp_path / path.name)
    summary = report.write_summary(tmp_path).read_text()
    assert {f"| {json.loads(p.read_text())['scenario']} |" in summary for p in kept} == {True}


def test_every_kept_report_quotes_its_command_whole():
    for path in RESULTS.glob("*.md"):
        for line in path.read_text().splitlines():
            if "`python -m bench.run" in line:
                assert line.count("`") % 2 == 0, f"{path.name}: {line}"


def test_the_recorded_command_names_no_folder_outside_the_project(tmp_path):
    assert recorded_command(["peak", "--out", str(tmp_path), "--no-charts"]) == \
        "python -m bench.run peak --out DIR --no-charts"
    assert recorded_command([f"--out={tmp_path}", "send"]) == "python -m bench.run --out=DIR send"
    assert recorded_command(["seed", "--out", str(RESULTS)]) == f"python -m bench.run seed --out {RESULTS}"
    assert recorded_command(["seed", "--rates", "600,800"]) == "python -m bench.run seed --rates 600,800"
