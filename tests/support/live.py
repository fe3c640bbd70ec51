"""Real processes for end-to-end tests: servers (`python -m imserver.server`) sharing the test database and Redis."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from bench.processes import Process as Supervised
from bench.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
# The ASGI servers the launcher runs (ASGI_SERVER). The tests of the server's own behaviour (drain, 1012, 4008,
# access log, rolling restart) run on each; the other end-to-end tests on the production launcher's, or on
# TEST_ASGI_SERVER's.
ENGINES = ("daphne", "uvicorn")
ENGINE = os.environ.get("TEST_ASGI_SERVER")


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
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # the browser tests' own need; never a server's
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Process(Supervised):
    """One real process of the system sharing the test database and Redis (bench.processes supervises it)."""

    def __init__(self, log_dir: Path, name: str, argv: list[str], health_url: str | None = None, **env):
        super().__init__(log_dir, name, argv, server_env(**env), health_url=health_url)


class Server(Process):
    """A server process on its own port, serving with the ASGI server `engine` (default ENGINE)."""

    def __init__(self, log_dir: Path, name: str, engine: str | None = None, **env):
        self.engine = engine or ENGINE or procfile_default("ASGI_SERVER")
        env.setdefault("ASGI_SERVER", self.engine)
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
    """Start a server sharing the test database and Redis; `engine` picks its ASGI server (default ENGINE)."""

    def start(name: str = "server", engine: str | None = None, **env) -> Server:
        return processes(Server(processes.log_dir, name, engine, **env))

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


# --- The production topology on one machine: nginx, a PostgreSQL primary with a hot standby, Redis with Sentinels ---
import contextlib
import re
import tempfile


def deploy_tool(name: str, *paths: str) -> str:
    """The path of a program a deployment test runs; missing, the test is skipped, but fails in CI, where
    `make test` (its deploy-tools target) installs it."""
    for candidate in (shutil.which(name), *paths):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    reason = f"{name} is not installed (`make deploy-tools` installs it as root)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def wait_until(predicate, timeout: float = 20, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout} s")
        time.sleep(interval)


class Nginx(Process):
    """nginx running deploy/nginx/imserver.conf itself, with its upstream, listen port and static folder replaced."""

    def __init__(self, log_dir: Path, name: str, upstreams: list, static_root: Path):
        self.port = free_port()
        self.url, self.ws_url = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}"
        self.upstreams = upstreams
        prefix = log_dir / name
        prefix.mkdir(exist_ok=True)
        site = (ROOT / "deploy/nginx/imserver.conf").read_text()
        lines = "".join(f"    server 127.0.0.1:{server.port} max_fails=0;\n" for server in upstreams)
        site, upstream_lines = re.subn(r"(?m)^    server 127\.0\.0\.1:80\d\d .*;\n", "", site)
        assert upstream_lines, "deploy/nginx/imserver.conf: no upstream server lines to replace"
        site = site.replace("upstream imserver {\n", "upstream imserver {\n" + lines, 1)
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.port};", 1)
        site = site.replace("alias /srv/imserver/static/;", f"alias {static_root}/;", 1)
        site = site.replace("/var/log/nginx/", f"{prefix}/")
        (prefix / "imserver.conf").write_text(site)
        temp_paths = "".join(f"    {kind}_temp_path {prefix}/{kind};\n"
                             for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (prefix / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "")  # the workers read the test's folders, which are root's
            + f"worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n    include /etc/nginx/mime.types;\n    access_log {prefix}/access.log;\n{temp_paths}"
            f"    include {prefix}/imserver.conf;\n}}\n")
        self.logs = [prefix / "imserver.access.log", prefix / "error.log"]
        argv = [deploy_tool("nginx", "/usr/sbin/nginx"), "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                "-g", "daemon off;"]
        super().__init__(log_dir, name, argv, health_url=f"{self.url}/health")

    def log_text(self) -> str:
        """What nginx has logged so far, access and errors."""
        return "".join(path.read_text(errors="replace") for path in self.logs if path.exists())


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` OS user (setpriv execs, no fork)."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *argv]


def postgres_bindir() -> Path:
    """Debian's PostgreSQL server binaries (postgresql-15), or the newest other version installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_basebackup"), key=lambda p: int(p.parent.parent.name))
    preferred = Path("/usr/lib/postgresql/15/bin")
    bindir = preferred if (preferred / "pg_basebackup").exists() else (found[-1].parent if found else None)
    deploy_tool("initdb", *([str(bindir / "initdb")] if bindir else []))
    return bindir


class PostgresServer(Process):
    """One PostgreSQL server of the cluster; stop() is a fast shutdown (clients cut, not waited for)."""

    def __init__(self, log_dir: Path, name: str, bindir: Path, data: Path, port: int):
        self.bindir, self.data, self.port = bindir, data, port
        super().__init__(log_dir, name, _as_postgres([str(bindir / "postgres"), "-D", str(data)]))

    def wait_ready(self, timeout: float = 30, ready_text: str | None = None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.output()[-2000:]}")
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True)
            if ready.returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready: {self.output()[-2000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: the servers' pooled connections are not waited for
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def sql(self, statement: str, dbname: str = "postgres"):
        """Run one statement as the superuser; the rows it returns."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname,
                             autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []


class PostgresCluster:
    """A PostgreSQL primary and a streaming hot standby of it (initdb, pg_basebackup -R), on ports and in data
    directories of their own under a temporary folder: the machine's own PostgreSQL is never touched."""

    def __init__(self, processes, dbname: str = "im_replica"):
        self.bindir = postgres_bindir()
        self.dbname = dbname
        self.dir = Path(tempfile.mkdtemp(prefix="im-pg-"))  # not the test's folder: the postgres user must enter it
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        primary_data, replica_data = self.dir / "primary", self.dir / "replica"
        self._run("initdb", "-D", str(primary_data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        primary_port, replica_port = free_port(), free_port()
        self._configure(primary_data, primary_port, "wal_level = replica\nmax_wal_senders = 5\n")
        self.primary = processes(PostgresServer(processes.log_dir, "pg-primary", self.bindir, primary_data,
                                                primary_port))
        self.primary.sql(f"CREATE DATABASE {dbname}")
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary_port), "-U", "postgres", "-D",
                  str(replica_data), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync")
        self._configure(replica_data, replica_port, "hot_standby = on\n")
        self.replica = processes(PostgresServer(processes.log_dir, "pg-replica", self.bindir, replica_data,
                                                replica_port))
        self.primary_url = f"postgres://postgres@127.0.0.1:{primary_port}/{dbname}"
        self.replica_url = f"postgres://postgres@127.0.0.1:{replica_port}/{dbname}"

    def _run(self, program: str, *args: str):
        done = subprocess.run(_as_postgres([str(self.bindir / program), *args]), capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"{program}: {done.stdout}{done.stderr}"

    def _configure(self, data: Path, port: int, extra: str):
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                       "fsync = off\nfull_page_writes = off\nmax_connections = 100\nshared_buffers = 32MB\n"
                       "log_min_messages = warning\n" + extra)

    def migrate(self):
        """Create the schema on the primary (the standby replays it)."""
        done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, capture_output=True,
                              text=True, timeout=300, env=server_env(DATABASE_URL=self.primary_url))
        assert done.returncode == 0, done.stdout + done.stderr

    def wait_replayed(self, timeout: float = 20):
        """Wait until the standby has replayed everything the primary has written so far."""
        (target,), = self.primary.sql("SELECT pg_current_wal_flush_lsn()::text")
        wait_until(lambda: self.replica.sql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")[0][0],
                   timeout, what="the standby replaying the primary")

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def postgres_cluster(processes):
    """A primary and a hot standby of it, started for the test and removed after it (with its data)."""
    cluster = PostgresCluster(processes)
    yield cluster
    cluster.primary.stop()
    cluster.replica.stop()
    cluster.remove()


@contextlib.contextmanager
def default_database(url: str):
    """Point this test's ORM (the `default` alias, in this thread) at another database for a while, e.g. the
    primary of a PostgresCluster, so that the fixtures and the shared checks read and write there."""
    import environ
    from django.db import connections

    saved = connections["default"]
    conf = {**saved.settings_dict, **environ.Env.db_url_config(url), "OPTIONS": {}, "CONN_MAX_AGE": 0}
    other = saved.__class__(conf, "default")
    connections["default"] = other
    try:
        yield other
    finally:
        other.close()
        connections["default"] = saved


class RedisNode(RedisServer):
    """A private redis-server with extra arguments (a replica: `--replicaof 127.0.0.1 PORT`)."""

    def __init__(self, log_dir: Path, name: str, *extra: str):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(log_dir), *extra]
        Process.__init__(self, log_dir, name, argv)


class Sentinel(RedisServer):
    """A Redis Sentinel running deploy/redis/sentinel.conf, its port, master and timeouts replaced."""

    def __init__(self, log_dir: Path, name: str, master_port: int, down_after_ms: int = 1000):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        conf = (ROOT / "deploy/redis/sentinel.conf").read_text()
        conf = conf.replace("port 26379", f"port {self.port}", 1).replace("bind 0.0.0.0", "bind 127.0.0.1", 1)
        conf = conf.replace("sentinel monitor im 10.0.0.11 6379 2", f"sentinel monitor im 127.0.0.1 {master_port} 2")
        conf = conf.replace("down-after-milliseconds im 5000", f"down-after-milliseconds im {down_after_ms}")
        conf = conf.replace("failover-timeout im 60000", "failover-timeout im 10000")
        assert f"monitor im 127.0.0.1 {master_port} 2" in conf, "deploy/redis/sentinel.conf changed shape"
        path = log_dir / f"{name}.conf"
        path.write_text(conf + f"dir {log_dir}\n")
        Process.__init__(self, log_dir, name, [deploy_tool("redis-server"), str(path), "--sentinel"])

    def master(self) -> tuple[str, int] | None:
        """The master's address as this Sentinel sees it."""
        with redis.Redis(port=self.port, socket_timeout=2) as client:
            found = client.execute_command("SENTINEL", "get-master-addr-by-name", "im")
        return (found[0].decode(), int(found[1])) if found else None


class RedisFailoverSet:
    """A Redis master, one replica of it and three Sentinels watching them (quorum 2)."""

    def __init__(self, processes, down_after_ms: int = 1000):
        log_dir = processes.log_dir
        self.master = processes(RedisNode(log_dir, "redis-master"))
        self.replica = processes(RedisNode(log_dir, "redis-replica", "--replicaof", "127.0.0.1",
                                           str(self.master.port)))
        self.sentinels = [processes(Sentinel(log_dir, f"sentinel-{i}", self.master.port, down_after_ms))
                          for i in range(3)]
        wait_until(self._settled, 30, 0.2, "the Sentinels seeing the replica and each other")

    def _settled(self) -> bool:
        for sentinel in self.sentinels:
            with redis.Redis(port=sentinel.port, socket_timeout=2) as client:
                if not client.execute_command("SENTINEL", "replicas", "im"):
                    return False
                if len(client.execute_command("SENTINEL", "sentinels", "im")) < 2:
                    return False
        return True

    @property
    def sentinel_hosts(self) -> str:
        """REDIS_SENTINELS for the processes."""
        return ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)

    def env(self) -> dict:
        """The settings that make a process reach Redis through these Sentinels only."""
        return {"REDIS_SENTINELS": self.sentinel_hosts, "REDIS_SENTINEL_MASTER": "im", "REDIS_URL": "redis:///0",
                "CELERY_BROKER_URL": ";".join(f"sentinel://127.0.0.1:{s.port}/0" for s in self.sentinels)}


@pytest.fixture
def redis_failover_set(processes):
    """Start a Redis master, a replica and three Sentinels; every one is stopped at the end of the test."""
    deploy_tool("redis-server")
    return RedisFailoverSet(processes)


@pytest.fixture
def start_nginx(processes, tmp_path):
    """Start nginx with deploy/nginx/imserver.conf in front of the given servers; the static files are collected
    into a folder of the test's (`nginx.static_root`)."""

    def start(upstreams: list, name: str = "nginx") -> Nginx:
        static_root = tmp_path / "static"
        if not static_root.exists():
            done = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
                                  cwd=ROOT, capture_output=True, text=True, timeout=120,
                                  env=server_env(STATIC_ROOT=str(static_root)))
            assert done.returncode == 0, done.stdout + done.stderr
        nginx = processes(Nginx(processes.log_dir, name, upstreams, static_root))
        nginx.static_root = static_root
        return nginx

    return start


def procfile_command(process: str, **values) -> list[str]:
    """The command line of one process of deploy/Procfile, as honcho's shell would run it: `$NAME` and
    `${NAME:-default}` from `values` (else the default), with this interpreter, and without `exec` and
    deploy/respawn (the test is the supervisor: a process it kills must stay dead)."""
    import shlex

    line = re.search(rf"(?m)^{process}: (.+)$", (ROOT / "deploy/Procfile").read_text()).group(1)
    line = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: str(values.get(m.group(1), m.group(2))), line)
    line = re.sub(r"\$(\w+)", lambda m: str(values[m.group(1)]), line)
    argv = shlex.split(line)
    while argv[0] in ("exec", "env", "deploy/respawn") or re.fullmatch(r"\w+=.*", argv[0]):
        argv = argv[1:]  # the test sets the environment itself
    return [sys.executable, *argv[1:]] if argv[0] == ".venv/bin/python" else argv


def procfile_default(name: str) -> str:
    """The value deploy/Procfile's web command gives `name` when the environment does not."""
    line = re.search(r"(?m)^web: (.+)$", (ROOT / "deploy/Procfile").read_text()).group(1)
    return re.search(rf"\b{name}=\$\{{{name}:-([^}}]*)\}}", line).group(1)


class ProductionServer(Server):
    """A server started with the web command of deploy/Procfile (--proxy-headers, the WebSocket pings), as it runs
    behind nginx in production; on TEST_ASGI_SERVER's engine when set, as the other servers the tests start."""

    def __init__(self, log_dir: Path, name: str, engine: str | None = None, **env):
        self.engine = engine or ENGINE or procfile_default("ASGI_SERVER")
        self.port = free_port()
        self.url, self.ws_url = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}"
        # Settings the command line takes (WS_PING_INTERVAL) are read from `env` as honcho's shell would.
        Process.__init__(self, log_dir, name, procfile_command("web", PORT=self.port, **env),
                         health_url=f"{self.url}/health", ASGI_SERVER=self.engine, **env)


@pytest.fixture
def start_production_server(processes):
    """Start a server as deploy/Procfile runs it, on the test database and Redis."""

    def start(name: str = "server", engine: str | None = None, **env) -> ProductionServer:
        return processes(ProductionServer(processes.log_dir, name, engine, **env))

    return start


class _OwnGroup(Supervised):
    """A process leading a group of its own: stop() and kill() reach its children, and whatever of the group
    outlives the leader is killed when it stops."""

    def __init__(self, log_dir: Path, name: str, argv: list[str], env: dict, **options):
        super().__init__(log_dir, name, argv, env, new_session=True, **options)

    def stop(self):
        super().stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


class Respawned(_OwnGroup):
    """A process run through deploy/respawn, as deploy/Procfile runs it: started again when it dies by itself."""

    def __init__(self, log_dir: Path, name: str, argv: list[str], **env):
        super().__init__(log_dir, name, [str(ROOT / "deploy/respawn"), *argv], server_env(**env), stop_timeout=30)

    def respawns(self) -> int:
        """How often respawn had to start the command again."""
        return self.output().count("respawn: ")


class MakeRun(_OwnGroup):
    """`make run` itself (demo_setup, the reference AI service on AI_PORT, the server on PORT), on the test database,
    in a process group of its own so that stop() reaches make, its shell and both servers. The install step is not
    remade (`-o install`): the test's interpreter is the project's."""

    def __init__(self, log_dir: Path, name: str = "make-run", **env):
        self.port, self.ai_port = free_port(), free_port()
        self.url, self.ws_url = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}"
        argv = [shutil.which("make") or "make", "-o", "install", "run", f"PORT={self.port}",
                f"AI_PORT={self.ai_port}", f"PY={sys.executable}"]
        env = server_env(**env)
        for inherited in ("AI_SERVICE_URL", "ALLOWED_HOSTS", "MAKEFLAGS", "MFLAGS"):
            env.pop(inherited, None)  # as in a fresh shell: make run decides them
        super().__init__(log_dir, name, argv, env, health_url=f"{self.url}/health", stop_timeout=20)


@pytest.fixture
def start_make_run(processes):
    """Start `make run` on free ports, sharing the test database and Redis."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")

    def start(**env) -> MakeRun:
        return processes(MakeRun(processes.log_dir, **env), timeout=120)

    return start
