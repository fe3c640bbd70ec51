"""The one supervisor of real processes, for the benchmark's deployment and the end-to-end tests alike.

A command starts with its output appended to `<log_dir>/<name>.log`; it is ready when a predicate holds (its health
URL answers 200, a line shows in its log), and fails at once with the log's tail if it exits before; it stops with
SIGTERM, then SIGKILL after `stop_timeout`; it can be killed and started again on the same arguments. With
`new_session` it leads a process group of its own, and stopping or killing reaches its children too."""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


class Process:
    def __init__(self, log_dir: Path, name: str, argv: list[str], env: dict, *, health_url: str | None = None,
                 new_session: bool = False, stop_timeout: float = 10.0):
        self.name, self.argv, self.env, self.health_url = name, argv, env, health_url
        self.new_session, self.stop_timeout = new_session, stop_timeout
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - open for the process's life, closed by stop()
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                start_new_session=self.new_session)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self) -> str:
        return self.output()[-3000:]

    def wait(self, ready, timeout: float = 60):
        """Wait until `ready()` holds; RuntimeError with the log's tail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
            if ready():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout} s:\n{self.tail()}")

    def wait_http(self, url: str, timeout: float = 60):
        return self.wait(lambda: _answers(url), timeout)

    def wait_text(self, text: str, timeout: float = 60):
        return self.wait(lambda: text in self.output(), timeout)

    def wait_ready(self, timeout: float = 30, ready_text: str | None = None):
        """Ready: `ready_text` in the log, or else the health URL answering (or simply running, without either)."""
        if ready_text is not None:
            return self.wait_text(ready_text, timeout)
        if self.health_url is not None:
            return self.wait_http(self.health_url, timeout)
        return self.wait(lambda: True, timeout)

    def restart(self):
        """Start the same command again (same port), after stop() or kill()."""
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - as in __init__
        self.proc = self._spawn()
        return self.wait_ready()

    def _signal(self, sig: int) -> None:
        try:
            if self.new_session:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def kill(self):
        """kill -9."""
        if self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
