"""Clients that never read are closed with 4008 once their backlog passes WS_MAX_QUEUED_BYTES, while the
others of their group keep getting every message and the server's memory comes back down."""
import asyncio
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from groups.services import group_create, member_add
from tests.support.live import ENGINES, needs_shared_database
from tests.support.rawws import RawClient, close_code
from tests.support.wsclient import Client
from users.models import Role
from users.services import user_tokens

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_shared_database()]

SLOW_READERS = 8
CONTENT = "x" * 3000
BATCH, MAX_SENDS = 50, 3000  # messages are sent in batches until every slow reader is closed
METRICS_TOKEN = "slow-reader-metrics"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def slow_closes(server) -> set[str]:
    """The client addresses the server closed with 4008, from its JSON log."""
    closed = set()
    for line in server.output().splitlines():
        if "closed with 4008" in line:
            closed.add(json.loads(line)["client"])
    return closed


def open_connections(server) -> float:
    metrics = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
    line = next(line for line in metrics.text.splitlines() if line.startswith("im_websocket_connections_open "))
    return float(line.split()[1])


@pytest.mark.parametrize("engine", ENGINES)
def test_slow_readers_are_closed_with_4008_and_memory_comes_back(start_server, make_user, engine):
    doctor, fast, slow = make_user(Role.DOCTOR), make_user(Role.PATIENT), make_user(Role.PATIENT)
    group = group_create(creator=doctor, group_name="Slow readers", ai_enabled=False)
    member_add(group=group, user=fast, user_role=Role.PATIENT)
    member_add(group=group, user=slow, user_role=Role.PATIENT)
    server = start_server("server", engine, IM_SEND_RATE="100000/min", WS_RATE_MESSAGES="100000", METRICS_TOKEN=METRICS_TOKEN)
    pid, slow_token, fast_token = server.proc.pid, user_tokens(user=slow)["access"], user_tokens(user=fast)["access"]
    headers = {"Authorization": f"Bearer {user_tokens(user=doctor)['access']}"}
    readers = [RawClient(server.port, slow.user_id, slow_token, rcvbuf=4096) for _ in range(SLOW_READERS)]
    prompt = readers[0]  # reads as soon as the server has closed it: it sees the close frame
    prompt_frames: list = []
    rss = {"peak": 0.0}

    def sample_rss(stop: threading.Event):
        while not stop.is_set():
            rss["peak"] = max(rss["peak"], rss_mb(pid))
            time.sleep(0.05)

    def read_when_closed():
        deadline = time.monotonic() + 120
        while f"127.0.0.1:{prompt.port}" not in slow_closes(server) and time.monotonic() < deadline:
            time.sleep(0.02)
        prompt_frames.extend(prompt.read_frames())

    async def scenario():
        watcher = Client("fast", fast.user_id, fast_token)
        await watcher.connect(server.ws_url)
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as http:

            async def send(count: int):
                async def one(_):
                    r = await http.post("/api/message/send", json={"group_id": group.group_id, "content": CONTENT})
                    assert r.status_code == 201, r.text
                for start in range(0, count, 4):
                    await asyncio.gather(*map(one, range(start, min(count, start + 4))))

            await send(20)  # warm-up: every code path has run once before the baseline
            await watcher.wait_for(lambda f: f["type"] == "message" and f["seq"] == 20, timeout=30)
            await asyncio.sleep(1)
            rss["baseline"] = rss_mb(pid)
            stop = threading.Event()
            sampler = threading.Thread(target=sample_rss, args=(stop,), daemon=True)
            sampler.start()
            prompt_reader = asyncio.create_task(asyncio.to_thread(read_when_closed))
            sent = 20
            while len(slow_closes(server)) < SLOW_READERS:
                assert sent < MAX_SENDS, f"only {len(slow_closes(server))} slow readers closed after {sent} sends"
                await send(BATCH)
                sent += BATCH
            await watcher.wait_for(lambda f: f["type"] == "message" and f["seq"] == sent, timeout=60)
            await prompt_reader
            # The slow readers' consumers got their websocket.disconnect: only the watcher is left.
            deadline = time.monotonic() + 30
            while open_connections(server) != 1:
                assert time.monotonic() < deadline, f"{open_connections(server)} connections still open"
                await asyncio.sleep(0.2)
            await asyncio.sleep(2)
            stop.set()
            sampler.join()
            rss["after"] = rss_mb(pid)
            pushes = [seq for group_id, seq in watcher.push_seqs if group_id == group.group_id]
            assert pushes == list(range(1, sent + 1)), "the reading member missed pushes"
            await watcher.close()
            return sent

    sent = asyncio.run(scenario())
    print(f"\n{SLOW_READERS} slow readers, {sent} messages of {len(CONTENT)} characters: server RSS baseline "
          f"{rss['baseline']:.1f} MB, peak {rss['peak']:.1f} MB, after the 4008 closes {rss['after']:.1f} MB; "
          f"the prompt reader's close code: {close_code(prompt_frames)} after {len(prompt_frames)} frames")
    assert slow_closes(server) == {f"127.0.0.1:{reader.port}" for reader in readers}
    # A reader that reads in time gets the close frame after its backlog (one that does not is dropped).
    assert close_code(prompt_frames) in (4008, None)
    # Generous: each slow reader is bounded by WS_MAX_QUEUED_BYTES (1 MiB) plus Twisted's 64 KiB buffer.
    assert rss["after"] - rss["baseline"] < 40, rss
    for reader in readers:
        reader.close()
