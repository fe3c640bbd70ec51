"""Care teams under load, for `make bench` (bench/run.py writes the fixture this file reads).

Each Locust user is one member of a group of five (a doctor, three patients and the AI assistant): it holds
its own WebSocket, and the doctor and patients send messages over HTTP and over the WebSocket in turn, at the
scenario's rate. Per message it measures the send answer time and, on every other member's connection, the
delivery time (the sender's clock is in the content; all processes share this machine's clock). Every
received message is checked against its group's seq: the lost, duplicated and out-of-order counts go into the
samples file with the timings. Patients in the `ai` scenario wait for the AI's reply to each message and record
its time minus the reference AI service's configured latency: the IM's own overhead.

Phases are shared through Redis (the fixture's `coord_url`), so several Locust processes agree on them:
`connected` counts open connections, `go` is when sending starts, `rate` is the `peak` scenario's target.
"""
import gc
import itertools
import json
import os
import random
import socket
import time
from urllib.parse import urlsplit

import gevent
import redis
import websocket
from gevent.event import AsyncResult, Event
from locust import LoadTestShape, User, constant, events, task

FIXTURE = json.loads(open(os.environ["BENCH_FIXTURE"]).read())
SCENARIO = FIXTURE["scenario"]
PARAMS = FIXTURE["params"]
MEMBERS = FIXTURE["members"]
SERVERS = FIXTURE["servers"]
# Thousands of users share a few connections: a user waits for a free one rather than failing.
COORD = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(FIXTURE["coord_url"], max_connections=20,
                                                                           timeout=60))
SENDING_ROLES = {"seed": {"DOCTOR", "PATIENT"}, "peak": {"DOCTOR", "PATIENT"}, "ai": {"PATIENT"}}.get(SCENARIO, set())
SENDERS = sum(1 for m in MEMBERS if m["role"] in SENDING_ROLES)
SEND_TIMEOUT = PARAMS.get("send_timeout", 30)  # seconds a send may wait for its answer, over HTTP or the WebSocket


class Samples:
    """What this process measured; written to `samples-<pid>.json` when the test stops."""

    def __init__(self):
        self.sends = []  # [sent_at, answer_ms, transport, ok]
        self.deliveries = []  # [received_at, latency_ms]
        self.ai = []  # [replied_at, overhead_ms]
        self.ai_first_delta = []  # [received_at, overhead_ms]: the first streamed text of an awaited answer
        self.probes = []  # [probe, received_at, latency_ms]
        self.connections = []  # per connection: {group_id: [baseline, unique, duplicated, out_of_order]}
        self.errors = {}
        self.unanswered_ai = 0
        self.gc_longest_ms = 0.0  # this process's longest garbage collection: every connection's reading stood still

    def error(self, kind: str):
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def dump(self):
        path = os.path.join(FIXTURE["out_dir"], f"samples-{os.getpid()}.json")
        with open(path, "w") as out:
            json.dump(self.__dict__, out)


SAMPLES = Samples()


class Collections:
    """The load generator's own pauses kept out of what it measures. A full collection walks every object the
    process holds, the samples above included: at a few hundred messages/s it stood every connection still for
    70-170 ms, and what they read next counted the pause as delivery latency. So what lives on is frozen once a
    second (out of the collector's walks: a run's samples live to its end), and the longest pause is reported."""
    started = 0.0

    @classmethod
    def timed(cls, phase: str, info: dict):
        if phase == "start":
            cls.started = time.perf_counter()
        else:
            SAMPLES.gc_longest_ms = max(SAMPLES.gc_longest_ms, (time.perf_counter() - cls.started) * 1000)

    @staticmethod
    def freezing():
        while True:
            gevent.sleep(1.0)
            gc.freeze()


gc.callbacks.append(Collections.timed)
LIVE = []  # every user that connected, so the integrity record is taken even if on_stop never ran


class Phase:
    """The shared phase, read from Redis by one greenlet per process."""
    go: float | None = None
    rate: float = 0.0
    done: bool = False

    @classmethod
    def follow(cls):
        while True:
            go, rate, done = COORD.mget("go", "rate", "done")
            cls.go = float(go) if go else None
            cls.rate = float(rate) if rate else 0.0
            cls.done = done is not None
            gevent.sleep(0.1)


@events.init.add_listener
def _start_following(environment, **kwargs):
    gevent.spawn(Phase.follow)
    gevent.spawn(Collections.freezing)


@events.test_stop.add_listener
def _dump(environment, **kwargs):
    for user in LIVE:
        user.record_integrity()
    SAMPLES.dump()


class GroupSeqs:
    """The seqs one connection saw in one group, above the last_seq it was told when it connected."""

    def __init__(self, baseline: int):
        self.baseline, self.seen, self.highest, self.duplicated, self.out_of_order = baseline, set(), 0, 0, 0

    def see(self, seq: int):
        if seq <= self.baseline:
            return
        if seq in self.seen:
            self.duplicated += 1
            return
        if seq < self.highest:
            self.out_of_order += 1
        self.seen.add(seq)
        self.highest = max(self.highest, seq)


def _frame_at(buffer: bytearray) -> tuple[int, int] | None:
    """(header length, payload length) of the server frame at the buffer's start, once all of it has arrived."""
    if len(buffer) < 2:
        return None
    start, length = 2, buffer[1] & 0x7F  # a server's frames are not masked
    if length >= 126:
        start = 4 if length == 126 else 10
        if len(buffer) < start:
            return None
        length = int.from_bytes(buffer[2:start], "big")
    return (start, length) if len(buffer) >= start + length else None


def server_messages(ws: websocket.WebSocket):
    """The messages a server sends on one WebSocket, read in large chunks, until it closes.

    websocket-client reads a frame's header, its length and its body with a system call each: at 2,400 deliveries/s
    that was a quarter of this process's CPU, which the servers share. Here a read takes whatever has arrived. Pings
    are answered through websocket-client, which also sends every frame of ours."""
    buffer, parts = bytearray(), []
    while True:
        at = _frame_at(buffer)
        if at is None:
            chunk = ws.sock.recv(65536)
            if not chunk:
                return
            buffer += chunk
            continue
        start, length = at
        final, opcode, payload = buffer[0] & 0x80, buffer[0] & 0x0F, bytes(buffer[start:start + length])
        del buffer[:start + length]
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return
        if opcode == websocket.ABNF.OPCODE_PING:
            ws.pong(payload)
        elif opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_CONT):
            parts.append(payload)
            if final:
                yield b"".join(parts)
                parts.clear()


class Http:
    """One kept-alive HTTP/1.1 connection of a member to its server, for JSON requests with a Content-Length answer.

    Locust's FastHttpSession built headers, cookies, URL objects and a timeout for every request: two fifths of the
    load generator's CPU at 600 messages/s (half of them sent over HTTP), on the cores the servers use.
    Here the request's head is made once and an answer is read in as few reads as it arrives in. A connection that
    fails is dropped (the send counts as failed) and the next request opens a new one; one the server closes
    (`Connection: close`) is dropped after its answer."""

    def __init__(self, server: str, token: str, timeout: float):
        url = urlsplit(server)
        self.address, self.timeout = (url.hostname, url.port or 80), timeout
        self.host = url.netloc.encode()
        self.authorization = f"Bearer {token}".encode()
        self.sock: socket.socket | None = None
        self.buffer = bytearray()

    def post(self, path: str, body: dict) -> tuple[int, bytes]:
        payload = json.dumps(body).encode()
        request = b"POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Type: application/json\r\n" \
                  b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.host, self.authorization, len(payload), payload)
        try:
            if self.sock is None:
                self.sock = socket.create_connection(self.address, timeout=self.timeout)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.buffer.clear()
            self.sock.sendall(request)
            return self._answer()
        except BaseException:
            self.close()
            raise

    def _answer(self) -> tuple[int, bytes]:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._read()
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        fields = dict(line.split(":", 1) for line in head[1:])
        fields = {name.strip().lower(): value.strip() for name, value in fields.items()}
        if "content-length" not in fields:
            raise ConnectionError(f"an answer without Content-Length (HTTP {status})")
        size = end + 4 + int(fields["content-length"])
        while len(self.buffer) < size:
            self._read()
        body = bytes(self.buffer[end + 4:size])
        del self.buffer[:size]
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def _read(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class CareTeamMember(User):
    """One member of a care team: a WebSocket reader, and a sender if its role sends in this scenario."""
    wait_time = constant(0)

    def on_start(self):
        self.slot = int(COORD.incr("slot")) - 1
        if self.slot >= len(MEMBERS):
            raise RuntimeError("more users than the fixture has members")
        member = MEMBERS[self.slot]
        self.user_id, self.token, self.role = member["user_id"], member["token"], member["role"]
        self.group_id = member["group_id"]
        server = SERVERS[self.slot % len(SERVERS)]
        self.http = Http(server, self.token, SEND_TIMEOUT)
        self.acks: dict[str, AsyncResult] = {}
        self.awaiting_ai: dict[str, tuple[str, float]] = {}  # message_id -> (group_id, sent at), answers awaited
        self.seqs: dict[str, int] = {}  # message_id -> seq of the patients' messages seen (ai scenario)
        self.first_seen: set[str] = set()  # awaited messages whose first streamed text has come
        self.ai_replied = Event()
        self.groups: dict[str, GroupSeqs] = {}
        self.recorded = False
        self.counter = itertools.count(1)
        self.connected = AsyncResult()
        started = time.time()
        ws_url = server.replace("http", "ws", 1) + f"/ws/{self.user_id}?token={self.token}"
        try:
            self.ws = websocket.create_connection(ws_url, timeout=None, skip_utf8_validation=True,
                                                  enable_multithread=True)
        except Exception as exc:  # noqa: BLE001 - counted and shown by Locust
            self._fire("WS", "connect", started, exc)
            raise
        self.reader = gevent.spawn(self._read)
        frame = self.connected.get(timeout=30)
        self._fire("WS", "connect", started)
        for group in frame["groups"]:
            self.groups[group["group_id"]] = GroupSeqs(group["last_seq"])
        LIVE.append(self)
        COORD.incr("connected")

    def on_stop(self):
        self.record_integrity()
        if getattr(self, "http", None) is not None:
            self.http.close()
        if getattr(self, "ws", None) is not None:
            COORD.decr("connected")
            self.ws.close(timeout=0)  # the reader takes the server's close frame, if any: the socket is its alone

    def record_integrity(self):
        if self.recorded or not self.groups:
            return
        self.recorded = True
        SAMPLES.connections.append({gid: [g.baseline, len(g.seen), g.duplicated, g.out_of_order]
                                    for gid, g in self.groups.items()})
        SAMPLES.unanswered_ai += len(self.awaiting_ai)

    # --- receiving -------------------------------------------------------------------------------

    def _read(self):
        try:
            for raw in server_messages(self.ws):
                self._take(raw)
        except Exception:  # noqa: BLE001 - closed by on_stop, or by the server
            pass
        if not self.recorded:
            SAMPLES.error("ws_closed")

    def _take(self, raw: bytes):
        now = time.time()
        frame = json.loads(raw)
        kind = frame.get("type")
        if kind in ("message", "ai_reply"):
            self._pushed(frame, now)
        elif kind == "message_ack":
            waiter = self.acks.pop(frame.get("client_msg_id"), None)
            if waiter is not None:
                waiter.set(frame["message"])
        elif kind == "error":
            waiter = self.acks.pop(frame.get("client_msg_id"), None)
            if waiter is not None:
                waiter.set_exception(RuntimeError(f"{frame.get('code')}: {frame.get('message')}"))
            else:
                SAMPLES.error(f"ws_error_{frame.get('code')}")
        elif kind == "ai_delta" and frame["index"] == 0:
            self._first_delta(frame, now)
        elif kind == "connected":
            self.connected.set(frame)

    def _pushed(self, frame: dict, now: float):
        group = self.groups.get(frame["group_id"])
        if group is not None:
            group.see(frame["seq"])
        content = frame["content"]
        if frame["type"] == "ai_reply":
            self._answered(frame, now)
            return
        if SCENARIO == "ai":
            self.seqs[frame["message_id"]] = frame["seq"]
        if frame["from_user_id"] == self.user_id:
            return
        if content.startswith("bench "):
            latency = (now - float(content.rsplit(" ", 1)[1])) * 1000
            SAMPLES.deliveries.append([now, latency])  # not in Locust's own table: its bookkeeping of each cost
            # a tenth of this process's CPU at 2,400 deliveries/s, and the results are made from these samples
        elif content.startswith("probe "):
            _, probe, sent_at = content.split(" ")
            SAMPLES.probes.append([int(probe), now, (now - float(sent_at)) * 1000])

    def _first_delta(self, frame: dict, now: float):
        """The first streamed text of an awaited answer: what the IM adds before the patient sees it grow."""
        awaited = self.awaiting_ai.get(frame.get("user_message_id"))
        if awaited is not None and frame["user_message_id"] not in self.first_seen:
            self.first_seen.add(frame["user_message_id"])
            overhead = (now - awaited[1] - PARAMS.get("ai_latency", 0.0) - PARAMS.get("coalesce_seconds", 0.0)) * 1000
            SAMPLES.ai_first_delta.append([now, overhead])
            self._fire_ms("AI", "first delta overhead", overhead)

    def _answered(self, frame: dict, now: float):
        """An AI reply answers the message it names and, coalesced into it, every earlier one of its group."""
        answered_seq = self.seqs.get(frame.get("reply_to"))
        done = [mid for mid, (group_id, _) in self.awaiting_ai.items()
                if mid == frame.get("reply_to") or (group_id == frame["group_id"] and answered_seq is not None
                                                    and self.seqs.get(mid, answered_seq + 1) <= answered_seq)]
        for mid in done:
            _, sent_at = self.awaiting_ai.pop(mid)
            # What the IM adds: the AI's own latency and the deliberate coalescing window are not its overhead.
            overhead = (now - sent_at - PARAMS.get("ai_latency", 0.0) - PARAMS.get("coalesce_seconds", 0.0)) * 1000
            SAMPLES.ai.append([now, overhead])
            self._fire_ms("AI", "reply overhead", overhead)
        if done and not self.awaiting_ai:
            self.ai_replied.set()

    # --- sending ---------------------------------------------------------------------------------

    @task
    def take_part(self):
        if self.role not in SENDING_ROLES:
            gevent.sleep(3600)
            return
        while Phase.go is None or time.time() < Phase.go:
            gevent.sleep(0.05)
        if SCENARIO == "ai":
            self._ask_ai_until_done()
        else:
            self._send_at_rate()
        gevent.sleep(3600)  # the shape ends the test after the drain

    def _interval(self) -> float | None:
        if SCENARIO == "peak":
            return SENDERS / Phase.rate if Phase.rate > 0 else None
        return PARAMS["send_interval"]

    def _send_at_rate(self):
        end = Phase.go + PARAMS["send_seconds"] if SCENARIO != "peak" else float("inf")
        next_at = None
        while True:
            now = time.time()
            interval = self._interval()
            if now >= end or Phase.done:
                return
            if interval is None:
                gevent.sleep(0.1)
                next_at = None
                continue
            if next_at is None:  # each sender at its own phase of the interval, so the load is even, not bursts
                next_at = max(now, Phase.go) + random.uniform(0, interval)
            if now < next_at:
                gevent.sleep(min(next_at - now, 0.5))
                continue
            self._send_one()
            next_at = max(next_at + interval, time.time() - interval)

    def _ask_ai_until_done(self):
        end = Phase.go + PARAMS["send_seconds"]
        next_at = Phase.go + random.uniform(0, PARAMS["send_interval"])
        while True:
            if time.time() < next_at:
                gevent.sleep(next_at - time.time())
            if time.time() >= end:
                return
            self.ai_replied.clear()
            burst = PARAMS.get("burst", 1)
            message = None
            for i in range(burst):  # a burst: only its last message is answered, the others coalesce into it
                message = self._send_one(awaits_ai=i == burst - 1) or message
                if i < burst - 1:
                    gevent.sleep(PARAMS.get("burst_gap", 0.2))
            if message is not None:
                self.ai_replied.wait(timeout=PARAMS.get("ai_wait", 30))
            next_at += PARAMS["send_interval"]

    def _send_one(self, awaits_ai: bool = True) -> dict | None:
        n = next(self.counter)
        client_msg_id = f"b{self.slot}-{n}"
        started = time.time()
        body = {"group_id": self.group_id, "content": f"bench {self.slot} {n} {started:.6f}",
                "client_msg_id": client_msg_id}
        over_ws = (n + self.slot) % 2 == 1 if PARAMS.get("ws_share", 0.5) == 0.5 else random.random() < PARAMS["ws_share"]
        message, error = None, None
        if over_ws:
            waiter = self.acks[client_msg_id] = AsyncResult()
            try:
                self.ws.send(json.dumps({"type": "send_message", **body}))
                message = waiter.get(timeout=SEND_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - an error frame, a timeout or a closed socket
                self.acks.pop(client_msg_id, None)
                error = exc
            self._fire("WS", "send", started, error)
        else:
            try:
                status, content = self.http.post("/api/message/send", body)
                if status == 201:
                    message = json.loads(content)
                else:
                    error = RuntimeError(f"HTTP {status}: {content[:200].decode(errors='replace')}")
            except Exception as exc:  # noqa: BLE001 - a refused, dropped or timed-out connection
                error = exc
            self._fire("HTTP", "send", started, error)
        answered = time.time()
        if message is not None and SCENARIO == "ai":
            self.seqs[message["message_id"]] = message["seq"]
            if awaits_ai:
                self.awaiting_ai[message["message_id"]] = (message["group_id"], started)
        SAMPLES.sends.append([started, (answered - started) * 1000, "ws" if over_ws else "http", error is None])
        if error is not None:
            SAMPLES.error("send_ws" if over_ws else "send_http")
        return message

    def _fire(self, kind: str, name: str, started: float, error: Exception | None = None):
        self.environment.events.request.fire(request_type=kind, name=name, response_time=(time.time() - started) * 1000,
                                             response_length=0, exception=error, context={})

    def _fire_ms(self, kind: str, name: str, ms: float):
        self.environment.events.request.fire(request_type=kind, name=name, response_time=ms, response_length=0,
                                             exception=None, context={})


class ScenarioShape(LoadTestShape):
    """Users and phases of the scenario: connect everyone, send for a while (or step the rate), drain, stop."""

    def __init__(self):
        super().__init__()
        self.users = len(MEMBERS) if SCENARIO != "connections" else 0
        self.spawn_rate = PARAMS.get("spawn_rate", 50)
        self.step = 0
        self.step_started = None
        self.done_at = None

    def tick(self):
        if SCENARIO == "connections":
            return self._connections()
        connected = int(COORD.get("connected") or 0)
        go = COORD.get("go")
        now = time.time()
        if go is None:
            if connected >= self.users:
                COORD.set("go", now + 1.0)
            elif self.get_run_time() > PARAMS.get("connect_timeout", 120):
                print(f"only {connected} of {self.users} users connected; giving up")
                return None
            return self.users, self.spawn_rate
        go = float(go)
        if SCENARIO == "peak":
            return self._peak(now, go)
        if now > go + PARAMS["send_seconds"] + PARAMS["drain_seconds"]:
            return None
        return self.users, self.spawn_rate

    def _peak(self, now: float, go: float):
        steps = PARAMS["rates"]
        if now < go:
            return self.users, self.spawn_rate
        if self.done_at is not None:
            return None if now > self.done_at + PARAMS["drain_seconds"] else (self.users, self.spawn_rate)
        if self.step_started is None:
            self._start_step(now)
        elif now - self.step_started >= PARAMS["step_seconds"]:
            COORD.rpush("steps", json.dumps({"rate": steps[self.step], "start": self.step_started, "end": now}))
            if self.step + 1 >= len(steps) or self._step_failed():
                self.done_at = now
                COORD.set("rate", 0)
                COORD.set("done", now)
            else:
                self.step += 1
                self._start_step(now)
        return self.users, self.spawn_rate

    def _start_step(self, now: float):
        self.step_started = now
        self.failures_before = self.runner.stats.total.num_failures
        COORD.set("rate", PARAMS["rates"][self.step])
        print(f"peak: step {self.step + 1}, {PARAMS['rates'][self.step]} messages/s", flush=True)

    def _step_failed(self) -> bool:
        """Stop raising the rate once deliveries get slow or anything fails (per Locust's recent window)."""
        delivery = self.runner.stats.get("delivery", "WS")
        p99 = delivery.get_current_response_time_percentile(0.99) or 0
        failed = self.runner.stats.total.num_failures > self.failures_before
        if p99 > PARAMS["p99_limit_ms"] or failed:
            print(f"peak: stopping, recent delivery p99 {p99} ms, failures {failed}", flush=True)
            return True
        return False

    def _connections(self):
        steps = PARAMS["steps"]
        if self.step >= len(steps):
            return None
        target = steps[self.step]
        if COORD.get(f"probed:{target}"):
            self.step += 1
            if self.step >= len(steps):
                return None
            target = steps[self.step]
        if self.get_run_time() > PARAMS.get("connect_timeout", 600):
            print("connections: out of time; stopping")
            return None
        return target, self.spawn_rate
