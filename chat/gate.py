"""`POST /api/message/send` answered on the server's event loop: an API client's send, the common case, without
Django's request cycle, DRF or a thread (chat.services.message_send_direct: the same checks, rate, statement and
push as message_send).

Only a request the DRF view would answer 201 is answered here, and with the view's own headers (learnt from its
answer to an earlier send of this process) and its renderer. Anything else goes to Django untouched, body and
all: a browser's request (Origin), another content type or Accept, a query string, a foreign Host, a token whose
user cannot be read from the loop (the process's user cache not listening: users.usercache), a group_id not
shaped like an id, a body that is not the plain JSON shape, every refusal (the view refuses it again, in the
contract's words), a repeat of a client_msg_id, and a message an app wants stored through the ORM (the AI bridge:
a patient's, to a group whose AI is on). Nothing is stored before a request is handed on."""
import functools
import json
import logging
import time

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest
from django.urls import resolve
from rest_framework.renderers import JSONRenderer

from chat.models import CLIENT_MSG_ID_MAX, MsgType
from chat.serializers import message_data
from chat.services import message_send_direct
from imserver import asyncdb, ids
from imserver.errors import InternalError, ServiceError, ServiceUnavailable, database_unavailable, error_body
from imserver.metrics import HTTP_LATENCY
from imserver.requestid import request_id_from, request_id_var
from users.authentication import CachedUserJWTAuthentication

logger = logging.getLogger(__name__)

SEND_PATHS = ("/api/message/send", "/api/message/send/")
JSON_TYPES = (b"application/json", b"application/json; charset=utf-8", b"application/json;charset=utf-8")
ACCEPTED = (None, b"*/*", b"application/json")
# Headers of the view's answer that are its own each time; the rest are the same for every send.
PER_ANSWER = (b"content-length", b"x-request-id", b"date", b"server", b"set-cookie")


class SendGate:
    """ASGI middleware in front of Django's handler (imserver.asgi)."""

    def __init__(self, app):
        self.app = app
        self.auth = CachedUserJWTAuthentication()
        self.renderer = JSONRenderer()
        self.headers: list[tuple[bytes, bytes]] | None = None  # the view's, once it has answered a send
        self.route: str | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in SEND_PATHS \
                or scope.get("query_string") or not asyncdb.available():
            return await self.app(scope, receive, send)
        body, complete = await _body(receive)
        answer = await self._answer(scope, body) if complete and self.headers is not None else None
        if answer is not None:
            status, content, request_id = answer
            await send({"type": "http.response.start", "status": status, "headers": [
                *self.headers, (b"content-length", str(len(content)).encode()),
                (b"x-request-id", request_id.encode())]})
            await send({"type": "http.response.body", "body": content})
            return
        await self.app(scope, _replay(body, complete, receive), self._learning(scope, send))

    async def _answer(self, scope, body: bytes) -> tuple[int, bytes, str] | None:
        headers = dict(scope["headers"])
        if len(headers) != len(scope["headers"]) or b"origin" in headers or not _host_allowed(headers) \
                or headers.get(b"content-type", b"").lower() not in JSON_TYPES \
                or headers.get(b"accept") not in ACCEPTED:
            return None
        user = await self._user(headers.get(b"authorization", b""))
        fields = _fields(body) if user is not None else None
        if fields is None:
            return None
        request_id = request_id_from(headers.get(b"x-request-id", b"").decode("latin-1"))
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            sent = await message_send_direct(sender=user, via="http", **fields)
        except ServiceError:
            return None  # the view refuses it again, in the contract's words
        except Exception as exc:  # noqa: BLE001 - answered in the contract's words, not handed on: it may be stored
            if database_unavailable(exc):
                logger.warning("database unavailable: %s", exc.__class__.__name__)
                status, content = 503, self.renderer.render(error_body(ServiceUnavailable.code,
                                                                       ServiceUnavailable.default_message))
            else:
                logger.error("direct send failed", exc_info=exc)
                status, content = 500, self.renderer.render(error_body(InternalError.code,
                                                                       InternalError.default_message))
        else:
            if sent is None:
                return None
            status, content = 201, self.renderer.render(message_data(sent[0]))
        finally:
            request_id_var.reset(token)
        HTTP_LATENCY.labels(self.route, "POST", str(status)).observe(time.perf_counter() - started)
        return status, content, request_id

    async def _user(self, authorization: bytes):
        """The token's user when simplejwt would let it in; None: Django decides (and answers any 401)."""
        parts = authorization.split()
        if len(parts) != 2 or parts[0] != b"Bearer":
            return None
        try:
            return await self.auth.auser(parts[1])
        except Exception:  # noqa: BLE001 - an invalid token, a refused user, the database away: the view decides
            return None

    def _learning(self, scope, send):
        """Django's `send`, keeping the headers of its JSON 201 to a send without an Origin (no CORS headers)."""
        headers = dict(scope["headers"])
        if self.headers is not None or b"origin" in headers or headers.get(b"accept") not in ACCEPTED:
            return send

        async def learn(message):
            if message["type"] == "http.response.start" and message["status"] == 201 and \
                    (b"content-type", b"application/json") in [(n.lower(), v) for n, v in message["headers"]]:
                self.route = self.route or resolve(scope["path"]).route
                self.headers = [(name, value) for name, value in message["headers"]
                                if name.lower() not in PER_ANSWER]
            await send(message)

        return learn


async def _body(receive) -> tuple[bytes, bool]:
    """The request body up to IM_MAX_REQUEST_BYTES, and whether that is all of it."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False  # the client went away: Django sees the disconnect
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if not message.get("more_body") or size > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return b"".join(chunks), not message.get("more_body") and size <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _replay(body: bytes, complete: bool, receive):
    """`receive` for Django: the body read so far, then the rest from the client."""
    replayed = False

    async def again():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return again


def _host_allowed(headers: dict) -> bool:
    """Django's own Host check, get_host() (ContractErrorsMiddleware answers a foreign one)."""
    if settings.USE_X_FORWARDED_HOST or b"host" not in headers:
        return False
    return _host_checked(headers[b"host"])


@functools.lru_cache(maxsize=64)  # a server answers to a few names; building a request to ask cost 1.7 % of its CPU
def _host_checked(host: bytes) -> bool:
    request = HttpRequest()
    request.META["HTTP_HOST"] = host.decode("latin-1")
    try:
        request.get_host()
    except DisallowedHost:
        return False
    return True


@receiver(setting_changed)
def _hosts_forget(setting, **kwargs):
    if setting in ("ALLOWED_HOSTS", "DEBUG"):
        _host_checked.cache_clear()


def _refuse_constant(name):
    raise ValueError(name)  # NaN and Infinity: DRF's strict JSON refuses them


def _fields(body: bytes) -> dict | None:
    """The send's fields when the body is exactly what SendSerializer accepts unchanged; None otherwise."""
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    group_id, content = data.get("group_id"), data.get("content")
    msg_type = data.get("msg_type", MsgType.TEXT)
    client_msg_id = data.get("client_msg_id")
    if not (ids.id_shaped(group_id) and isinstance(content, str) and msg_type in (MsgType.TEXT, MsgType.IMAGE)
            and (client_msg_id is None or _plain(client_msg_id, CLIENT_MSG_ID_MAX))):
        return None
    return {"group_id": group_id, "content": content, "msg_type": msg_type, "client_msg_id": client_msg_id}


def _plain(value, max_length: int) -> bool:
    """A string DRF's CharField keeps as it is: not blank, nothing to trim, within its max_length (NUL and lone
    surrogates, which it refuses, the service refuses too)."""
    return isinstance(value, str) and 0 < len(value) <= max_length and value == value.strip()
