"""The AI client reads both streaming protocols from a real local server, piece by piece: events split across
network reads, a tool call spread over deltas, a stream cut in the middle, a service that answers JSON anyway; and
it keeps its connection for the next answer."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ai_bridge import client

pytestmark = pytest.mark.django_db


class _Scripted(BaseHTTPRequestHandler):
    """Answers every POST with `script`: a list of byte strings written one by one, with a pause between."""

    script: list[bytes] = []
    content_type = "text/event-stream"
    bodies: list = []
    hold = 0.0  # seconds the connection stays open after the script, before the server hangs up
    finished: threading.Event

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.bodies.append((json.loads(self.rfile.read(int(self.headers["Content-Length"]))), dict(self.headers)))
        self.send_response(200)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Connection", "close")
        self.end_headers()
        for piece in self.script:
            self.wfile.write(piece)
            self.wfile.flush()
            time.sleep(0.05)
        time.sleep(self.hold)
        self.close_connection = True
        self.finished.set()


@pytest.fixture
def scripted(settings):
    handler = type("Handler", (_Scripted,), {"bodies": [], "finished": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.AI_SERVICE_URL = f"http://127.0.0.1:{server.server_port}/reply"
    settings.AI_SERVICE_STREAM = True
    settings.AI_SERVICE_TIMEOUT = 5
    yield handler
    server.shutdown()
    server.server_close()


def _call(handler, *, protocol="simple", script, content_type="text/event-stream"):
    handler.script, handler.content_type = script, content_type
    pieces = []
    answer = client.ai_call(client.request_body(message="hi", history=[], group_id="g", user_id="u",
                                                message_id="m"), on_delta=pieces.append)
    return answer, pieces


def test_simple_events_split_across_reads_add_up(scripted):
    answer, pieces = _call(scripted, script=[b'data: {"delta": "Hel', b'lo "}\n\ndata: {"del', b'ta": "there"}\n\n',
                                             b'data: {"done": true}\n\n'])
    assert pieces == ["Hello ", "there"] and answer.reply == "Hello there" and not answer.escalate
    body, headers = scripted.bodies[0]
    assert "text/event-stream" in headers["Accept"]


def test_openai_content_deltas_and_done(scripted, settings):
    settings.AI_SERVICE_PROTOCOL = "openai"
    settings.AI_SERVICE_URL = settings.AI_SERVICE_URL.rsplit("/", 1)[0] + "/v1"
    chunk = lambda delta: f"data: {json.dumps({'choices': [{'index': 0, 'delta': delta}]})}\n\n".encode()  # noqa: E731
    answer, pieces = _call(scripted, protocol="openai", script=[chunk({"role": "assistant"}), chunk({"content": "Rest "}),
                                                                chunk({"content": "well."}), b"data: [DONE]\n\n"])
    assert pieces == ["Rest ", "well."] and answer.reply == "Rest well."
    assert scripted.bodies[0][0]["stream"] is True


def test_an_openai_tool_call_spread_over_deltas_escalates(scripted, settings):
    settings.AI_SERVICE_PROTOCOL = "openai"
    settings.AI_SERVICE_URL = settings.AI_SERVICE_URL.rsplit("/", 1)[0] + "/v1"
    calls = [{"index": 0, "id": "c1", "function": {"name": "escalate_", "arguments": '{"rea'}},
             {"index": 0, "function": {"name": "to_doctor", "arguments": 'son": "chest pain"}'}}]
    script = [f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'tool_calls': [c]}}]})}\n\n".encode()
              for c in calls] + [b"data: [DONE]\n\n"]
    answer, pieces = _call(scripted, script=script)
    assert answer.escalate and answer.escalate_reason == "chest pain" and pieces == []


def test_a_simple_escalation_event(scripted):
    answer, _ = _call(scripted, script=[b'data: {"escalate": true, "reason": "stroke signs", "done": true}\n\n'])
    assert answer.escalate and answer.escalate_reason == "stroke signs"


def test_a_stream_cut_in_the_middle_is_a_retriable_error(scripted):
    with pytest.raises(client.AIError) as caught:
        _call(scripted, script=[b'data: {"delta": "Take two"}\n\n', b'data: {"delta": " tabl'])
    assert caught.value.retriable and "cut short" in caught.value.reason


def test_a_service_that_ignores_stream_is_read_as_json(scripted):
    answer, pieces = _call(scripted, script=[json.dumps({"reply": "whole answer"}).encode()],
                           content_type="application/json")
    assert answer.reply == "whole answer" and pieces == []


def test_a_callback_can_stop_the_stream(scripted):
    def stop(text):
        raise client.StreamStopped("a doctor wrote")

    scripted.script = [b'data: {"delta": "a"}\n\n', b'data: {"delta": "b"}\n\n', b'data: {"done": true}\n\n']
    with pytest.raises(client.StreamStopped):
        client.ai_call(client.request_body(message="hi", history=[], group_id="", user_id="", message_id=""),
                       on_delta=stop)


def test_streamed_answers_one_after_the_other_share_one_connection(ai_service, settings):
    settings.AI_SERVICE_STREAM = True
    for n in range(3):
        answer = client.ai_call(client.request_body(message=f"question {n}", history=[], group_id="g", user_id="u",
                                                    message_id=f"m{n}"), on_delta=lambda text: None)
        assert answer.reply.startswith(f"Reference AI reply to: question {n}")
    assert ai_service.calls == 3 and ai_service.connections == 1


def test_a_service_that_holds_the_stream_open_after_its_last_event_does_not_hold_the_answer(scripted, settings):
    settings.AI_STREAM_DRAIN_SECONDS, settings.AI_SERVICE_TIMEOUT = 0.2, 10
    scripted.hold = 3
    answer, pieces = _call(scripted, script=[b'data: {"delta": "Rest well."}\n\n', b'data: {"done": true}\n\n'])
    assert answer.reply == "Rest well." and pieces == ["Rest well."]
    assert not scripted.finished.is_set()  # the answer came while the service still held the connection
