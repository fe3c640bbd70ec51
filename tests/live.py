"""Real processes for end-to-end tests: daphne servers sharing the test database and Redis."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def needs_real_services():
    """E2E tests run where the test database is PostgreSQL and Redis carries the channel layer."""
    return pytest.mark.skipif(
        connection.vendor != "postgresql" or not settings.REDIS_URL,
        reason="end-to-end tests need DATABASE_URL (PostgreSQL) and REDIS_URL",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_database_url() -> str:
    conf = connection.settings_dict
    auth = conf["USER"] + (f":{conf['PASSWORD']}" if conf["PASSWORD"] else "")
    return f"postgres://{auth}@{conf['HOST'] or '127.0.0.1'}:{conf['PORT'] or 5432}/{conf['NAME']}"


def server_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(DATABASE_URL=test_database_url(), REDIS_URL=settings.REDIS_URL,
               DJANGO_SETTINGS_MODULE="imserver.settings", PYTHONUNBUFFERED="1")
    env.pop("COV_CORE_SOURCE", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Server:
    """One daphne process on its own port."""

    def __init__(self, log_dir: Path, name: str, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "imserver.asgi:application"],
            cwd=ROOT, env=server_env(**env), stdout=self.log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready: {self.log_path.read_text()[-2000:]}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def start_server(tmp_path):
    """Start daphne servers; all are stopped at the end of the test."""
    servers = []

    def start(name: str = "server", **env) -> Server:
        server = Server(tmp_path, name, **env)
        servers.append(server)
        return server.wait_ready()

    yield start
    for server in servers:
        server.stop()
