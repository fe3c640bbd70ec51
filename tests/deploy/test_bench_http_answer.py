"""`python -m bench.http_answer` cannot rot: one short round of each variant runs and is answered."""
import re
import shutil
import subprocess
import sys

import pytest

from tests.support.live import ROOT

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk (Debian's package) is not installed")


def test_both_variants_are_served_and_measured():
    out = subprocess.run([sys.executable, "-m", "bench.http_answer", "--rounds", "1", "--seconds", "1",
                          "--connections", "2"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    rounds = re.findall(r"round 1 (held|apart) *: (\d+) answers, ([\d.]+) µs", out.stdout)
    assert [variant for variant, _, _ in rounds] == ["held", "apart"], out.stdout + out.stderr
    assert all(int(answers) > 0 and float(micros) > 0 for _, answers, micros in rounds)
