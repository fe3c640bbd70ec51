"""The systemd units of deploy/systemd/ are valid for systemd (systemd-analyze verify, with the paths of this checkout)
and start what deploy/Procfile starts, with a stop timeout longer than a server's drain."""
import re
import subprocess
from pathlib import Path

from django.conf import settings

from tests.support.live import ROOT, deploy_tool, procfile_command

UNITS = ROOT / "deploy/systemd"


def _rendered(tmp_path: Path) -> Path:
    """The units as an operator installs them, with this checkout for /srv/imserver and root for the user."""
    (tmp_path / "env").write_text("DEBUG=false\n")
    for unit in UNITS.iterdir():
        text = unit.read_text().replace("/srv/imserver", str(ROOT))
        text = text.replace("User=imserver", "User=root").replace("Group=imserver", "Group=root")
        text = text.replace("EnvironmentFile=/etc/imserver/env", f"EnvironmentFile={tmp_path / 'env'}")
        (tmp_path / unit.name).write_text(text)
    return tmp_path


def test_systemd_accepts_every_unit(tmp_path):
    analyze = deploy_tool("systemd-analyze")
    folder = _rendered(tmp_path)
    units = ["imserver@8011.service", "imserver-worker.service", "imserver-beat.service",
             "imserver-ai-reference.service", "imserver.target"]
    done = subprocess.run([analyze, "verify", "--man=no", *(f"./{u}" for u in units)], cwd=folder,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


def _exec_start(unit: str) -> list[str]:
    text = (UNITS / unit).read_text().replace("\\\n", " ")
    return re.search(r"(?m)^ExecStart=(.+)$", text).group(1).split()


def test_units_run_the_procfile_commands_and_wait_for_the_drain():
    server = _exec_start("imserver@.service")
    assert server[0] == "/srv/imserver/.venv/bin/python"
    assert server[1:] == [arg if arg != "8011" else "%i" for arg in procfile_command("web", PORT=8011)[1:]]
    worker = _exec_start("imserver-worker.service")
    assert worker[1:5] == procfile_command("worker")[1:5] == ["-A", "imserver", "worker", "--loglevel"]
    template = (UNITS / "imserver@.service").read_text()
    stop_timeout = int(re.search(r"(?m)^TimeoutStopSec=(\d+)$", template).group(1))
    grace = 5  # WS_SHUTDOWN_GRACE's default, which the units keep
    assert stop_timeout > grace + settings.WS_SHUTDOWN_EXIT_MARGIN, "systemd would SIGKILL a server still draining"
    assert "KillSignal=SIGTERM" in template and "Restart=always" in template
    for unit in ("imserver@8011.service", "imserver-worker.service", "imserver-beat.service"):
        assert unit in (UNITS / "imserver.target").read_text()
