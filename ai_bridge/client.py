"""The AI service clients: one pooled httpx client, the `simple` and `openai` wire protocols."""
import json
import socket
import threading
import time
from dataclasses import dataclass, field

import httpx
from django.conf import settings

from imserver.metrics import AI_CALLS

_lock = threading.Lock()
_client: httpx.Client | None = None

ESCALATE_TOOL = "escalate_to_doctor"
# Declared in every `openai` request: the model calls it instead of answering when a human must take over.
_ESCALATE_TOOL_SPEC = {
    "type": "function",
    "function": {
        "name": ESCALATE_TOOL,
        "description": "Alert the patient's doctors and stop answering: use it for anything urgent or dangerous.",
        "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]},
    },
}


class StreamStopped(Exception):
    """Raised by an `on_delta` callback to stop a stream whose answer must not reach the group any more."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class AIError(Exception):
    """A failed call; `retriable` says whether another attempt may succeed."""

    def __init__(self, reason: str, *, retriable: bool, status_code: int | None = None, body=None,
                 outcome: str = "error", retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retriable, self.status_code, self.body = reason, retriable, status_code, body
        self.outcome, self.retry_after = outcome, retry_after


@dataclass
class AIAnswer:
    reply: str
    status_code: int
    duration_ms: int
    request_body: dict = field(default_factory=dict)
    response_body: object = None
    escalate: bool = False  # the AI asked for a human
    escalate_reason: str = ""


def http_client() -> httpx.Client:
    """The process's pooled client (created on first use, after any fork)."""
    global _client
    with _lock:
        if _client is None:
            _client = httpx.Client(timeout=settings.AI_SERVICE_TIMEOUT,
                                   limits=httpx.Limits(max_connections=settings.AI_HTTP_MAX_CONNECTIONS))
        return _client


def endpoint() -> str:
    base = settings.AI_SERVICE_URL
    if settings.AI_SERVICE_PROTOCOL == "openai":
        return base.rstrip("/") + "/chat/completions"
    return base


def request_body(*, message: str, history: list[dict], group_id: str, user_id: str, message_id: str) -> dict:
    """The body for the configured wire protocol; `history` is [{role, content}] before `message`."""
    if settings.AI_SERVICE_PROTOCOL == "openai":
        messages = [{"role": "system", "content": settings.AI_SYSTEM_PROMPT}, *history,
                    {"role": "user", "content": message}]
        body = {"model": settings.AI_MODEL, "messages": messages, "tools": [_ESCALATE_TOOL_SPEC]}
        if settings.AI_SERVICE_STREAM:
            body["stream"] = True
        return body
    return {"message": message, "history": history, "group_id": group_id, "user_id": user_id,
            "message_id": message_id}


def _answer_from(data) -> tuple[str, bool, str]:
    """(reply, escalate, reason) from a parsed answer of the configured protocol."""
    if settings.AI_SERVICE_PROTOCOL == "openai":
        message = data["choices"][0]["message"]
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            if function.get("name") == ESCALATE_TOOL:
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except ValueError:
                    arguments = {}
                reason = arguments.get("reason") if isinstance(arguments, dict) else None
                return message.get("content") or "", True, str(reason or "the AI asked for a doctor")
        reply = message["content"]
    else:
        if data.get("escalate") is True:
            return data.get("reply") or "", True, str(data.get("reason") or "the AI asked for a doctor")
        reply = data["reply"]
    if not isinstance(reply, str) or not reply.strip():
        raise ValueError("empty reply")
    return reply, False, ""


def ai_call(body: dict, on_delta=None) -> AIAnswer:
    """POST the body to the AI service; raise AIError (retriable or not) on any failure.

    A streamed answer calls `on_delta(text)` for each piece as it arrives (it may raise to stop the stream);
    the answer returned is the whole of it either way."""
    started = time.perf_counter()
    outcome = "success"
    try:
        return _call(body, on_delta)
    except AIError as exc:
        outcome = exc.outcome
        raise
    finally:
        AI_CALLS.labels(outcome).observe(time.perf_counter() - started)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(settings.AI_RETRY_AFTER_MAX, max(0.0, float(response.headers.get("Retry-After", ""))))
    except ValueError:  # absent, or an HTTP date: the usual backoff
        return None


class _Deadline:
    """Closes the response at the attempt's deadline, which ends a read that is waiting: httpx's timeouts bound
    each read, not the whole body, and a service sending a byte a second would hold the attempt for ever."""

    def __init__(self, response: httpx.Response, deadline: float):
        self.response, self.deadline, self.timer = response, deadline, None

    def __enter__(self):
        self._arm()
        return self

    def _arm(self) -> None:
        self.timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), self._cut)
        self.timer.start()

    def __exit__(self, *exc):
        self.timer.cancel()

    def shorten(self, seconds: float) -> None:
        """Close the response `seconds` from now if that is earlier than the deadline."""
        if time.monotonic() + seconds < self.deadline:
            self.timer.cancel()
            self.deadline = time.monotonic() + seconds
            self._arm()

    def _cut(self) -> None:
        """End the response, waking a read that waits on its socket (closing it from here would not). A response
        read to its end is closed already, and its connection may be back in the pool: that one is left alone."""
        if self.response.is_closed:
            return
        stream = self.response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed
                pass
        self.response.close()

    def passed(self) -> bool:
        return time.monotonic() > self.deadline

    def check(self):
        if self.passed():
            raise AIError(f"timed out after {settings.AI_SERVICE_TIMEOUT:g} s", retriable=True, outcome="timeout")


def _chunks(response: httpx.Response, deadline: _Deadline):
    """The body's bytes as they come, within AI_MAX_RESPONSE_BYTES and the deadline."""
    size = 0
    try:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > settings.AI_MAX_RESPONSE_BYTES:
                raise AIError(f"answer larger than {settings.AI_MAX_RESPONSE_BYTES} bytes", retriable=False,
                              status_code=response.status_code, outcome="too_large")
            deadline.check()
            yield chunk
    except (httpx.HTTPError, httpx.StreamError):
        deadline.check()  # closed at the deadline: a timeout, not a broken connection
        raise
    deadline.check()


def _events(response: httpx.Response, deadline: _Deadline):
    """Server-sent events' `data:` payloads, whole even when split across network reads."""
    buffer = b""
    for chunk in _chunks(response, deadline):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                yield line[5:].strip().decode("utf-8", errors="replace")
    # What is left had no line end: an event the service never finished (the stream was cut), not an event.


def _drained(events, deadline: _Deadline) -> None:
    """Read what follows a stream's last event, the end of its body, so that the connection goes back to the pool
    and the next answer starts on it (no new connection, or TLS handshake, per answer); OpenAI's client does the
    same. A service that sends more, or stalls for AI_STREAM_DRAIN_SECONDS, loses its connection, not the answer."""
    deadline.shorten(settings.AI_STREAM_DRAIN_SECONDS)
    try:
        for _ in events:
            pass
    except (AIError, httpx.HTTPError, httpx.StreamError):
        pass


class _Stream:
    """What a streamed answer adds up to: the text, and an escalation asked for on the way."""

    def __init__(self):
        self.parts: list[str] = []
        self.done = False
        self.escalate_reason: str | None = None
        self.tool_calls: dict[int, dict] = {}  # openai: index -> {"name", "arguments"} as the deltas build them

    def feed(self, data: str, on_delta) -> None:
        if data == "[DONE]":
            self.done = True
            return
        event = json.loads(data)
        if settings.AI_SERVICE_PROTOCOL == "openai":
            choice = event["choices"][0]
            delta = choice.get("delta") or {}
            for call in delta.get("tool_calls") or []:
                built = self.tool_calls.setdefault(call.get("index", 0), {"name": "", "arguments": ""})
                function = call.get("function") or {}
                built["name"] += function.get("name") or ""
                built["arguments"] += function.get("arguments") or ""
            text = delta.get("content")
        else:
            if event.get("escalate") is True:
                self.escalate_reason = str(event.get("reason") or "the AI asked for a doctor")
            if event.get("done") is True:
                self.done = True
            text = event.get("delta")
        if isinstance(text, str) and text:
            self.parts.append(text)
            if on_delta is not None:
                on_delta(text)

    def answer(self) -> tuple[str, bool, str]:
        for call in self.tool_calls.values():
            if call["name"] == ESCALATE_TOOL:
                try:
                    arguments = json.loads(call["arguments"] or "{}")
                except ValueError:
                    arguments = {}
                reason = arguments.get("reason") if isinstance(arguments, dict) else None
                return "".join(self.parts), True, str(reason or "the AI asked for a doctor")
        if self.escalate_reason is not None:
            return "".join(self.parts), True, self.escalate_reason
        reply = "".join(self.parts)
        if not reply.strip():
            raise ValueError("empty reply")
        return reply, False, ""


def _call(body: dict, on_delta=None) -> AIAnswer:
    headers = {"Authorization": f"Bearer {settings.AI_SERVICE_API_KEY}"} if settings.AI_SERVICE_API_KEY else {}
    if settings.AI_SERVICE_STREAM:
        headers["Accept"] = "text/event-stream, application/json"
    started = time.perf_counter()
    deadline = time.monotonic() + settings.AI_SERVICE_TIMEOUT  # for the whole attempt, body included
    stream = None
    try:
        with http_client().stream("POST", endpoint(), json=body, headers=headers,
                                  timeout=settings.AI_SERVICE_TIMEOUT) as response, _Deadline(response, deadline) as d:
            if response.status_code < 400 and response.headers.get("content-type", "").startswith("text/event-stream"):
                stream = _Stream()
                events = _events(response, d)
                try:
                    for data in events:
                        stream.feed(data, on_delta)
                        if stream.done:
                            break
                except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
                    raise AIError("malformed stream from the AI service", retriable=False,
                                  status_code=response.status_code, outcome="malformed") from exc
                if stream.done:
                    _drained(events, d)
                raw = b""
            else:
                raw = b"".join(_chunks(response, d))
    except httpx.TimeoutException as exc:
        raise AIError(f"timed out after {settings.AI_SERVICE_TIMEOUT:g} s", retriable=True, outcome="timeout") from exc
    except (httpx.HTTPError, httpx.StreamError) as exc:
        if stream is not None:  # the service hung up mid-stream: the next attempt starts from the beginning
            raise AIError("the stream was cut short", retriable=True, outcome="cut_short") from exc
        raise AIError(f"connection failed: {exc.__class__.__name__}", retriable=True, outcome="connection") from exc
    duration_ms = int((time.perf_counter() - started) * 1000)
    if stream is not None:
        if not stream.done:
            raise AIError("the stream was cut short", retriable=True, status_code=response.status_code,
                          outcome="cut_short")
        try:
            reply, escalate, reason = stream.answer()
        except ValueError as exc:
            raise AIError("malformed answer from the AI service", retriable=False,
                          status_code=response.status_code, outcome="malformed") from exc
        return AIAnswer(reply=reply, status_code=response.status_code, duration_ms=duration_ms, request_body=body,
                        response_body={"streamed": True, "reply": reply}, escalate=escalate, escalate_reason=reason)
    text = raw[: settings.AI_RECORD_TEXT_MAX].decode("utf-8", errors="replace")
    if response.status_code == 429 or response.status_code >= 500:
        raise AIError(f"service answered {response.status_code}", retriable=True, status_code=response.status_code,
                      body=text, outcome="retriable_status", retry_after=_retry_after(response))
    if response.status_code >= 400:
        raise AIError(f"service refused the request with {response.status_code}", retriable=False,
                      status_code=response.status_code, body=text, outcome="refused")
    try:
        data = json.loads(raw)
        reply, escalate, reason = _answer_from(data)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError) as exc:
        raise AIError("malformed answer from the AI service", retriable=False,
                      status_code=response.status_code, body=text, outcome="malformed") from exc
    return AIAnswer(reply=reply, status_code=response.status_code, duration_ms=duration_ms, request_body=body,
                    response_body=data, escalate=escalate, escalate_reason=reason)
