"""deploy/run, the single-host production launcher: one command checks the settings, migrates, collects the static
files and runs deploy/Procfile under honcho (servers, worker, beat) without creating any demo user; a server that
dies is started again by deploy/respawn while the rest go on; SIGTERM stops everything within honcho's bound."""
import os
import re
import signal
import socket
import time

import httpx
import pytest

from tests.support import live
from tests.support.live import ROOT, Process, free_port, needs_real_services, wait_until
from users.models import User

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "launcher-test-only-" + "Qm3vX8pL2nR7tK4wZ9cB6hJ1sD5gF0aE" * 2,
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
}
DEMO_USERS = ("dr_chen", "patient_li", "patient_wang", "admin")
HONCHO_KILL_WAIT = 5


def _two_free_ports() -> int:
    for _ in range(50):
        base = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    raise AssertionError("no two free ports in a row")


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def _children(pid: int) -> list[int]:
    return [int(child) for child in open(f"/proc/{pid}/task/{pid}/children").read().split()]


def test_one_command_runs_the_host_without_demo_users_and_stops_it(processes, start_redis, tmp_path):
    redis = start_redis()
    base = _two_free_ports()
    env = {**PRODUCTION, "DATABASE_URL": live.test_database_url(), "REDIS_URL": redis.url,
           "CELERY_BROKER_URL": redis.url,
           "IM_SERVERS": "2", "IM_BASE_PORT": str(base), "STATIC_ROOT": str(tmp_path / "static"),
           "CELERY_BEAT_SCHEDULE": str(tmp_path / "beat-schedule"), "CELERY_CONCURRENCY": "1"}
    users_before = User.objects.count()
    launcher = processes(Process(processes.log_dir, "launcher", [str(ROOT / "deploy/run")], **env), timeout=120,
                         ready_text="beat.1 started")
    ports = [base, base + 1]
    for port in ports:
        wait_until(lambda p=port: _ready(p), 60, 0.2, f"the server on {port}")
    wait_until(lambda: "ready." in launcher.output(), 60, 0.2, "the worker")
    output = launcher.output()
    assert "System check identified no issues" in output, output[-3000:]
    assert (tmp_path / "static/chat/app.js").exists()
    assert not User.objects.filter(username__in=DEMO_USERS).exists()
    assert User.objects.count() == users_before

    # A server killed with kill -9 is started again on its port; the others are not disturbed.
    respawn = int(re.search(r"web\.1 started \(pid=(\d+)\)", output).group(1))
    (server,) = _children(respawn)
    os.kill(server, signal.SIGKILL)
    wait_until(lambda: "respawn: " in launcher.output(), 20, 0.2, "respawn noticing the crash")
    wait_until(lambda: _ready(base), 60, 0.2, "the server started again")
    assert _ready(base + 1) and launcher.proc.poll() is None

    started = time.monotonic()
    launcher.proc.send_signal(signal.SIGTERM)
    launcher.proc.wait(timeout=HONCHO_KILL_WAIT + 20)
    stopped = time.monotonic() - started
    output = launcher.output()
    assert "sending SIGKILL" not in output, output[-3000:]
    assert stopped < HONCHO_KILL_WAIT, stopped
    for port in ports:
        assert _refused(port)
    for name in ("web.1", "web.2", "worker.1", "beat.1"):
        assert re.search(rf"{re.escape(name)} stopped \(rc=", output), name


def _ready(port: int) -> bool:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json()["status"] == "ok"
