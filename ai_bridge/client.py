"""The AI service clients: one pooled httpx client, the `simple` and `openai` wire protocols."""
import threading
import time
from dataclasses import dataclass, field

import httpx
from django.conf import settings

from imserver.observability import AI_CALLS

_lock = threading.Lock()
_client: httpx.Client | None = None


class AIError(Exception):
    """A failed call; `retriable` says whether another attempt may succeed."""

    def __init__(self, reason: str, *, retriable: bool, status_code: int | None = None, body=None,
                 outcome: str = "error"):
        super().__init__(reason)
        self.reason, self.retriable, self.status_code, self.body = reason, retriable, status_code, body
        self.outcome = outcome


@dataclass
class AIAnswer:
    reply: str
    status_code: int
    duration_ms: int
    request_body: dict = field(default_factory=dict)
    response_body: object = None


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
        return {"model": settings.AI_MODEL, "messages": messages}
    return {"message": message, "history": history, "group_id": group_id, "user_id": user_id,
            "message_id": message_id}


def _reply_from(data) -> str:
    if settings.AI_SERVICE_PROTOCOL == "openai":
        reply = data["choices"][0]["message"]["content"]
    else:
        reply = data["reply"]
    if not isinstance(reply, str) or not reply.strip():
        raise ValueError("empty reply")
    return reply


def ai_call(body: dict) -> AIAnswer:
    """POST the body to the AI service; raise AIError (retriable or not) on any failure."""
    started = time.perf_counter()
    outcome = "success"
    try:
        return _call(body)
    except AIError as exc:
        outcome = exc.outcome
        raise
    finally:
        AI_CALLS.labels(outcome).observe(time.perf_counter() - started)


def _call(body: dict) -> AIAnswer:
    headers = {"Authorization": f"Bearer {settings.AI_SERVICE_API_KEY}"} if settings.AI_SERVICE_API_KEY else {}
    started = time.perf_counter()
    try:
        response = http_client().post(endpoint(), json=body, headers=headers, timeout=settings.AI_SERVICE_TIMEOUT)
    except httpx.TimeoutException as exc:
        raise AIError(f"timed out after {settings.AI_SERVICE_TIMEOUT:g} s", retriable=True, outcome="timeout") from exc
    except httpx.HTTPError as exc:
        raise AIError(f"connection failed: {exc.__class__.__name__}", retriable=True, outcome="connection") from exc
    duration_ms = int((time.perf_counter() - started) * 1000)
    text = response.text[: settings.AI_RECORD_TEXT_MAX]
    if response.status_code == 429 or response.status_code >= 500:
        raise AIError(f"service answered {response.status_code}", retriable=True,
                      status_code=response.status_code, body=text, outcome="retriable_status")
    if response.status_code >= 400:
        raise AIError(f"service refused the request with {response.status_code}", retriable=False,
                      status_code=response.status_code, body=text, outcome="refused")
    try:
        data = response.json()
        reply = _reply_from(data)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise AIError("malformed answer from the AI service", retriable=False,
                      status_code=response.status_code, body=text, outcome="malformed") from exc
    return AIAnswer(reply=reply, status_code=response.status_code, duration_ms=duration_ms,
                    request_body=body, response_body=data)
