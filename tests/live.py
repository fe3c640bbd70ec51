"""Real processes for end-to-end tests: daphne servers sharing the test database and Redis."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def needs_shared_database():
    """Tests that start servers need a database those processes can open too."""
    return pytest.mark.skipif(
        connection.vendor == "sqlite" and connection.settings_dict["NAME"].startswith(("file:", ":memory:")),
        reason="the test database is in memory; servers started by the test cannot share it",
    )


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
    if connection.vendor == "sqlite":
        return f"sqlite:///{conf['NAME']}"
    auth = conf["USER"] + (f":{conf['PASSWORD']}" if conf["PASSWORD"] else "")
    return f"postgres://{auth}@{conf['HOST'] or '127.0.0.1'}:{conf['PORT'] or 5432}/{conf['NAME']}"


def server_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(DATABASE_URL=test_database_url(), REDIS_URL=settings.REDIS_URL or "",
               DJANGO_SETTINGS_MODULE="imserver.settings", PYTHONUNBUFFERED="1")
    env.pop("COV_CORE_SOURCE", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Process:
    """One real process of the system, its output in a log file of the test."""

    def __init__(self, log_dir: Path, name: str, argv: list[str], health_url: str | None = None, **env):
        self.name, self.health_url, self.argv, self.env = name, health_url, argv, server_env(**env)
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    def restart(self):
        """Start the same command again (same port), after stop() or kill()."""
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        return self.wait_ready()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30, ready_text: str | None = None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.output()[-2000:]}")
            if ready_text is not None and ready_text in self.output():
                return self
            if self.health_url is not None:
                try:
                    if httpx.get(self.health_url, timeout=1).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready: {self.output()[-2000:]}")

    def kill(self):
        """kill -9."""
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


class Server(Process):
    """A daphne process on its own port."""

    def __init__(self, log_dir: Path, name: str, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "imserver.server", "-b", "127.0.0.1", "-p", str(self.port),
                "imserver.asgi:application"]
        super().__init__(log_dir, name, argv, health_url=f"{self.url}/health", **env)


class RedisServer(Process):
    """A private redis-server on its own port, without persistence, that a test may kill and restart."""

    def __init__(self, log_dir: Path, name: str):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(log_dir)]
        super().__init__(log_dir, name, argv)

    def wait_ready(self, timeout: float = 10, ready_text: str | None = None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.output()[-2000:]}")
            try:
                with redis.Redis.from_url(self.url, socket_timeout=1) as client:
                    client.ping()
                return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready: {self.output()[-2000:]}")


def assert_stored_once(told: list[dict]) -> None:
    """Every message a client was told was stored is in the database once, with the seq it was told."""
    from chat.models import Message

    ids = [m["message_id"] for m in told]
    assert len(ids) == len(set(ids)), "the same message was answered as new twice"
    stored = {mid: (gid, seq, content) for mid, gid, seq, content in Message.objects.filter(message_id__in=ids)
              .values_list("message_id", "group__group_id", "seq", "content")}
    assert [m["seq"] for m in told if m["message_id"] not in stored] == [], "told stored, not in the database"
    for m in told:
        assert stored[m["message_id"]] == (m["group_id"], m["seq"], m["content"])
        assert Message.objects.filter(group__group_id=m["group_id"], content=m["content"]).count() == 1, \
            f"{m['content']!r} stored more than once"


async def assert_all_received(clients, told: list[dict]) -> None:
    """Every connected member has every told message: pushed live, or recovered with `sync`."""
    for group_id in {m["group_id"] for m in told}:
        for client in clients:
            await client.sync_all(group_id)
            seen = {m["message_id"] for m in client.history.get(group_id, {}).values()}
            missing = [m["seq"] for m in told if m["group_id"] == group_id and m["message_id"] not in seen]
            assert missing == [], f"{client.name} never got seqs {missing}"


@pytest.fixture
def processes(tmp_path):
    """Start processes; every one still running is stopped at the end of the test."""
    started = []

    def start(process: Process, **ready) -> Process:
        started.append(process)
        return process.wait_ready(**ready)

    start.log_dir = tmp_path
    yield start
    for process in started:
        process.stop()


@pytest.fixture
def start_server(processes):
    """Start a daphne server sharing the test database and Redis."""

    def start(name: str = "server", **env) -> Server:
        return processes(Server(processes.log_dir, name, **env))

    return start


@pytest.fixture
def start_worker(processes):
    """Start a Celery worker on the test database and the Redis broker."""

    def start(name: str = "worker", **env) -> Process:
        argv = [sys.executable, "-m", "celery", "-A", "imserver", "worker", "--loglevel", "info",
                "--concurrency", "2", "--hostname", f"{name}-{free_port()}@%h", "--without-gossip", "--without-mingle"]
        return processes(Process(processes.log_dir, name, argv, **env), ready_text="ready.")

    return start


@pytest.fixture
def start_redis(processes):
    """Start a private redis-server; pass its `url` as REDIS_URL and CELERY_BROKER_URL of the processes."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")

    def start(name: str = "redis") -> RedisServer:
        return processes(RedisServer(processes.log_dir, name))

    return start


@pytest.fixture
def start_ai_service(processes):
    """Start the reference AI service as its own process; returns (process, url)."""

    def start(*extra: str, api_key: str = "e2e-ai-key") -> tuple[Process, str]:
        port = free_port()
        argv = [sys.executable, "manage.py", "ai_reference_serve", "--port", str(port), "--api-key", api_key, *extra]
        process = processes(Process(processes.log_dir, "ai-service", argv, health_url=f"http://127.0.0.1:{port}/"))
        return process, f"http://127.0.0.1:{port}/reply"

    return start
