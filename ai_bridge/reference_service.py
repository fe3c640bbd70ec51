"""The bundled reference AI service: both wire protocols over real HTTP, with settable misbehaviour.

The reply is visibly derived from the input: `Reference AI reply to: <message>` (plus how many history
items it saw), so tests can assert which message a reply answers."""
import json
import random
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Behaviour:
    api_key: str = ""
    latency: float = 0.0  # seconds
    jitter: float = 0.0  # seconds, uniform 0..jitter added
    error_rate: float = 0.0  # share of calls answered 500
    malformed_rate: float = 0.0  # share of calls answered 200 with a body that is not the protocol's


def reply_text(message: str, history: list) -> str:
    return f"Reference AI reply to: {message} (history {len(history)})"


class Handler(BaseHTTPRequestHandler):
    behaviour = Behaviour()
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet: the server under test has the interesting logs
        pass

    def _answer(self, status: int, body) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        self._answer(200, {"status": "ok"})

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
        time.sleep(b.latency + random.uniform(0, b.jitter))
        if random.random() < b.error_rate:
            return self._answer(500, {"error": "reference service failure"})
        if random.random() < b.malformed_rate:
            return self._answer(200, b'{"unexpected": ')
        if self.path.rstrip("/").endswith("/chat/completions"):
            messages = data.get("messages") or []
            users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
            if not users:
                return self._answer(400, {"error": "no user message"})
            history = [m for m in messages[:-1] if m.get("role") != "system"]
            content = reply_text(users[-1].get("content", ""), history)
            return self._answer(200, {"id": "ref", "object": "chat.completion", "model": data.get("model"),
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": content}}]})
        if not isinstance(data.get("message"), str):
            return self._answer(400, {"error": "message is required"})
        return self._answer(200, {"reply": reply_text(data["message"], data.get("history") or [])})


def serve(host: str, port: int, behaviour: Behaviour) -> ThreadingHTTPServer:
    handler = type("ConfiguredHandler", (Handler,), {"behaviour": behaviour})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve_in_thread(behaviour: Behaviour, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    server = serve(host, port, behaviour)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
