"""The bundled reference AI service: both wire protocols over real HTTP, with settable misbehaviour.

The reply is visibly derived from the input: `Reference AI reply to: <message>` (plus how many history
items it saw), so tests can assert which message a reply answers. A message containing `escalate_word` is
escalated (`simple`: `{"escalate": true, "reason"}`; `openai`: a call of the `escalate_to_doctor` tool), and
these markers in a message ask for a misbehaving answer: `#nul` (NUL characters in the reply and an extra
field), `#huge` (a 1 MB reply and a 5 MB extra field), `#trickle` (the answer sent one byte a second), `#cut` (the
first streamed answer to that message hangs up halfway). Asked to stream (`openai`: `"stream": true`; `simple`:
`Accept: text/event-stream`), it answers with server-sent events, a few words each, `chunk_delay` apart, in a
chunked body on a connection kept alive, as hosted AI services do."""
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Behaviour:
    api_key: str = ""
    latency: float = 0.0  # seconds
    jitter: float = 0.0  # seconds, uniform 0..jitter added
    error_rate: float = 0.0  # share of calls answered 500
    fail_first: int = 0  # the first calls answered 500, however error_rate draws
    malformed_rate: float = 0.0  # share of calls answered 200 with a body that is not the protocol's
    escalate_word: str = "escalate-now"  # a message containing it is escalated by the "AI"
    calls: int = 0  # answered so far (tests count the calls the bridge made)
    connections: int = 0  # accepted so far (tests see whether the bridge keeps its connections alive)
    chunk_delay: float = 0.02  # seconds between the events of a streamed answer
    cut_done: set = field(default_factory=set)  # messages whose first stream was already cut (#cut)


def reply_text(message: str, history: list) -> str:
    return f"Reference AI reply to: {message} (history {len(history)})"


_calls_lock = threading.Lock()


def _chunk(delta: dict) -> dict:
    """One `chat.completion.chunk` of OpenAI's streaming protocol."""
    return {"id": "ref", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta,
                                                                       "finish_reason": None}]}


class Handler(BaseHTTPRequestHandler):
    behaviour = Behaviour()
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet: the server under test has the interesting logs
        pass

    def setup(self):
        super().setup()
        with _calls_lock:
            self.behaviour.connections += 1

    def _answer(self, status: int, body, trickle: bool = False) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        # Headers and body leave in two writes: with Nagle's algorithm the body of an answer on a kept-alive
        # connection would wait for the client's delayed ACK (40 ms on Linux).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if not trickle:
            self.wfile.write(raw)
            return
        try:
            for byte in raw:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(1)
        except OSError:  # the client gave up, as it should
            pass

    def _stream(self, events: list[dict], text: str, done) -> None:
        """Server-sent events, `chunk_delay` apart, in a chunked body on a connection kept alive for the next call;
        `#cut` hangs up halfway the first time for this message."""
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each event leaves as written
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        cut = "#cut" in text and text not in self.behaviour.cut_done
        if cut:
            self.behaviour.cut_done.add(text)
        try:
            for n, event in enumerate([*events, done]):
                if cut and n == len(events) // 2:
                    self.close_connection = True  # the body never ends
                    return
                payload = (event if isinstance(event, str) else json.dumps(event)).encode()
                data = b"data: " + payload + b"\n\n"
                last = b"0\r\n\r\n" if n == len(events) else b""  # the body's end, with the last event
                self.wfile.write(b"%x\r\n%s\r\n%s" % (len(data), data, last))
                self.wfile.flush()
                if n < len(events):
                    time.sleep(self.behaviour.chunk_delay)
        except OSError:  # the client stopped reading (a doctor took over): as it should
            self.close_connection = True

    @staticmethod
    def _pieces(reply: str) -> list[str]:
        words = reply.split(" ")
        return [" ".join(words[i:i + 2]) + (" " if i + 2 < len(words) else "") for i in range(0, len(words), 2)]

    def _misbehaving(self, text: str, reply: str) -> tuple[str, dict]:
        """The reply and extra fields a marker in the message asks for."""
        if "#nul" in text:
            return f"{reply}\x00 with NUL\x00", {"extra": "nul\x00field"}
        if "#huge" in text:
            return reply + " " + "h" * 1_000_000, {"extra": "x" * 5_000_000}
        return reply, {}

    def do_GET(self):
        self._answer(200, {"status": "ok", "calls": self.behaviour.calls})

    def do_POST(self):
        b = self.behaviour
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if b.api_key and self.headers.get("Authorization") != f"Bearer {b.api_key}":
            return self._answer(401, {"error": "bad api key"})
        try:
            data = json.loads(raw)
        except ValueError:
            return self._answer(400, {"error": "body is not JSON"})
        with _calls_lock:
            b.calls += 1
            call = b.calls
        time.sleep(b.latency + random.uniform(0, b.jitter))
        if call <= b.fail_first or random.random() < b.error_rate:
            return self._answer(500, {"error": "reference service failure"})
        if random.random() < b.malformed_rate:
            return self._answer(200, b'{"unexpected": ')
        if self.path.rstrip("/").endswith("/chat/completions"):
            return self._openai(data)
        if not isinstance(data.get("message"), str):
            return self._answer(400, {"error": "message is required"})
        text = data["message"]
        streaming = "text/event-stream" in self.headers.get("Accept", "")
        if b.escalate_word and b.escalate_word in text:
            escalation = {"escalate": True, "reason": f"the patient wrote {b.escalate_word!r}"}
            return self._stream([], text, {**escalation, "done": True}) if streaming else self._answer(200, escalation)
        reply, extra = self._misbehaving(text, reply_text(text, data.get("history") or []))
        if streaming and "#trickle" not in text:
            return self._stream([{"delta": piece} for piece in self._pieces(reply)], text, {"done": True})
        return self._answer(200, {"reply": reply, **extra}, trickle="#trickle" in text)

    def _openai(self, data: dict) -> None:
        b = self.behaviour
        messages = data.get("messages") or []
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            return self._answer(400, {"error": "no user message"})
        text = users[-1].get("content", "")
        tools = {t.get("function", {}).get("name") for t in data.get("tools") or [] if isinstance(t, dict)}
        streaming = data.get("stream") is True and "#trickle" not in text
        if b.escalate_word and b.escalate_word in text and "escalate_to_doctor" in tools:
            arguments = json.dumps({"reason": f"the patient wrote {b.escalate_word!r}"})
            if streaming:  # the tool call spread over deltas, as OpenAI sends it
                half = len(arguments) // 2
                calls = [{"index": 0, "id": "call_ref", "type": "function",
                          "function": {"name": "escalate_to_doctor", "arguments": arguments[:half]}},
                         {"index": 0, "function": {"arguments": arguments[half:]}}]
                return self._stream([_chunk({"tool_calls": [call]}) for call in calls], text, "[DONE]")
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_ref", "type": "function",
                 "function": {"name": "escalate_to_doctor", "arguments": arguments}}]}
            finish = "tool_calls"
        else:
            history = [m for m in messages[:-1] if m.get("role") != "system"]
            reply, extra = self._misbehaving(text, reply_text(text, history))
            if streaming:
                return self._stream([_chunk({"content": piece}) for piece in self._pieces(reply)], text, "[DONE]")
            message, finish = {"role": "assistant", "content": reply, **extra}, "stop"
        return self._answer(200, {"id": "ref", "object": "chat.completion", "model": data.get("model"),
                                  "choices": [{"index": 0, "finish_reason": finish, "message": message}]},
                            trickle="#trickle" in text)


def serve(host: str, port: int, behaviour: Behaviour) -> ThreadingHTTPServer:
    handler = type("ConfiguredHandler", (Handler,), {"behaviour": behaviour})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve_in_thread(behaviour: Behaviour, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    server = serve(host, port, behaviour)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
