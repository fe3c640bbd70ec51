"""The WebSocket protocol of API.md as an AsyncAPI 3 document, served at /api/asyncapi.yaml.

The document describes the server: it receives the client frames and sends the server frames. Every frame schema
lists all of the frame's fields and no others, so a frame the server starts to send with a new field fails
tests/core/test_asyncapi.py until it is described here."""
import functools

import yaml
from django.http import HttpResponse
from django.views.decorators.http import require_GET
from drf_spectacular.settings import spectacular_settings

from chat.models import MsgType
from users.models import Role

# The close codes of API.md, with what a client does about each.
CLOSE_CODES = [
    {"code": 4401, "reason": "The access token is invalid, or has expired (an open connection is closed at its "
                             "token's expiry).", "client": "Refresh the token, then reconnect."},
    {"code": 4403, "reason": "The account is deactivated or deleted, or the path names another user.",
     "client": "Stop: retrying cannot help."},
    {"code": 4429, "reason": "The user already holds WS_MAX_CONNECTIONS_PER_USER connections, across all servers.",
     "client": "Retry later, with exponential backoff."},
    {"code": 4008, "reason": "The client read too slowly: its backlog passed WS_MAX_QUEUED_BYTES.",
     "client": "Reconnect at once and sync every group."},
    {"code": 1012, "reason": "The server is restarting (SIGTERM).",
     "client": "Reconnect at once (another server answers) and sync every group."},
]

_STRING = {"type": "string"}
_INT0 = {"type": "integer", "minimum": 0}
_TIME = {"type": "string", "format": "date-time"}


def _id(prefix: str) -> dict:
    return {"type": "string", "pattern": f"^{prefix}_[0-9a-z]+$"}


def _const(value: str) -> dict:
    return {"type": "string", "const": value}


MESSAGE_FIELDS = {
    "message_id": _id("msg"),
    "group_id": _id("group"),
    "seq": {"type": "integer", "minimum": 1, "description": "Per group, from 1, without gaps."},
    "from_user_id": _id("user"),
    "from_role": {"$ref": "#/components/schemas/Role"},
    "msg_type": {"$ref": "#/components/schemas/MsgType"},
    "content": _STRING,
    "client_msg_id": {"type": ["string", "null"], "maxLength": 64},
    "reply_to": {"oneOf": [_id("msg"), {"type": "null"}], "description": "The message an AI reply answers."},
    "created_at": _TIME,
}


def _frame(kind: str, fields: dict, optional: tuple = (), description: str = "") -> dict:
    """A frame's schema: `type` and `fields`, all required but `optional`, nothing else."""
    schema = {
        "type": "object",
        "properties": {"type": _const(kind), **fields},
        "required": ["type", *(name for name in fields if name not in optional)],
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


# Client to server: the frame, and the frame that answers it (if any).
CLIENT_FRAMES = {
    "send_message": (_frame("send_message", {
        "group_id": _id("group"),
        "content": {"type": "string", "description": "1..IM_MAX_MESSAGE_CHARS characters after trimming."},
        "msg_type": {"type": "string", "enum": [MsgType.TEXT.value, MsgType.IMAGE.value],
                     "default": MsgType.TEXT.value},
        "client_msg_id": {"type": ["string", "null"], "maxLength": 64,
                          "description": "Makes the send idempotent: a repeat answers the first message."},
    }, optional=("msg_type", "client_msg_id"), description="Store a message, as POST /api/message/send."),
        "message_ack"),
    "sync": (_frame("sync", {
        "group_id": _id("group"),
        "after_seq": {**_INT0, "default": 0, "description": "The last seq seen in the group."},
        "limit": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
    }, optional=("after_seq", "limit"), description="Catch up: the group's messages after after_seq."),
        "sync_result"),
    "ping": (_frame("ping", {}, description="Application-level ping."), "pong"),
    "typing": (_frame("typing", {"group_id": _id("group")}, description="Tell the other members."), None),
    "read": (_frame("read", {"group_id": _id("group"), "seq": _INT0},
                    description="Move one's own read watermark (forward only, never past last_seq)."), None),
}

_GROUP_STATE = {
    "type": "object",
    "properties": {"group_id": _id("group"), "last_seq": _INT0, "last_read_seq": _INT0, "unread_count": _INT0},
    "required": ["group_id", "last_seq", "last_read_seq", "unread_count"],
    "additionalProperties": False,
}
_MESSAGES = {"type": "array", "items": {"$ref": "#/components/schemas/Message"}}
_RECORD = {"group_id": _id("group"), "record_id": _id("air"), "user_message_id": _id("msg")}
_MEMBERSHIP = {"group_id": _id("group"), "user_id": _id("user"), "user_role": {"$ref": "#/components/schemas/Role"}}

SERVER_FRAMES = {
    "connected": _frame("connected", {"user_id": _id("user"), "groups": {"type": "array", "items": _GROUP_STATE},
                                      "server_time": _TIME},
                        description="Right after the handshake: the user's groups, their last_seq and read state."),
    "message": _frame("message", MESSAGE_FIELDS, description="A new message of one of the user's groups "
                                                             "(the sender's own connections included)."),
    "ai_reply": _frame("ai_reply", MESSAGE_FIELDS, description="A new message whose msg_type is AI_REPLY."),
    "message_ack": _frame("message_ack", {"client_msg_id": {"type": ["string", "null"]},
                                          "message": {"$ref": "#/components/schemas/Message"}},
                          description="The answer to send_message, once the message is stored."),
    "sync_result": _frame("sync_result", {"group_id": _id("group"), "messages": _MESSAGES,
                                          "has_more": {"type": "boolean"}},
                          description="The answer to sync: seq > after_seq, ascending; ask again while has_more."),
    "pong": _frame("pong", {"server_time": _TIME}, description="The answer to ping."),
    "typing": _frame("typing", {"group_id": _id("group"), "user_id": _id("user")},
                     description="Another member is typing."),
    "ai_status": _frame("ai_status", {"group_id": _id("group"), "user_message_id": _id("msg"),
                                      "status": {"type": "string", "enum": ["thinking", "failed", "suppressed"]}},
                        description="The AI works on a message, gave up (failed), or its answer was not posted "
                                    "(suppressed): drop any partial ai_delta text."),
    "ai_delta": _frame("ai_delta", {**_RECORD, "index": _INT0, "text": _STRING},
                       description="Streamed AI text, index from 0 (from 0 again when a stream is retried); the "
                                   "final ai_reply replaces it. Only the doctors get it in review mode."),
    "ai_draft": _frame("ai_draft", {**_RECORD, "content": _STRING},
                       description="Review mode, doctors only: a draft that waits for approval."),
    "escalation": _frame("escalation", {**_RECORD, "reason": _STRING},
                         description="Doctors only: a red flag, or the AI asked for a human; the AI is paused "
                                     "until a doctor writes in the group."),
    "member_joined": _frame("member_joined", _MEMBERSHIP, description="A member joined one of the user's groups "
                                                                      "(or the user joined one)."),
    "member_left": _frame("member_left", _MEMBERSHIP, description="A member left, or was removed."),
    "read_receipt": _frame("read_receipt", {"group_id": _id("group"), "user_id": _id("user"),
                                            "last_read_seq": _INT0},
                           description="A member's read watermark moved."),
    "error": _frame("error", {"code": {"type": "string", "examples": ["VALIDATION_ERROR", "NOT_GROUP_MEMBER",
                                                                      "PAYLOAD_TOO_LARGE", "RATE_LIMITED"]},
                              "message": _STRING, "client_msg_id": {"type": ["string", "null"]}},
                    optional=("client_msg_id",),
                    description="A bad frame (not JSON, unknown type, not a member, too long, rate limited); "
                                "the connection stays open."),
}


def _schema_name(kind: str, side: str) -> str:
    return "".join(part.title() for part in kind.split("_")) + ("FromClient" if side == "client" else "Frame")


def _message_key(kind: str, side: str) -> str:
    return f"{side}_{kind}"


def _close_codes_text() -> str:
    return "\n".join(f"- `{c['code']}`: {c['reason']} {c['client']}" for c in CLOSE_CODES)


@functools.cache
def document() -> dict:
    """The AsyncAPI 3.0 document, as a dict."""
    schemas = {
        "Role": {"type": "string", "enum": list(Role.values)},
        "MsgType": {"type": "string", "enum": list(MsgType.values)},
        "Message": {"type": "object", "properties": MESSAGE_FIELDS, "required": list(MESSAGE_FIELDS),
                    "additionalProperties": False},
    }
    messages, channel_messages, operations = {}, {}, {}
    for side, frames in (("client", {k: v[0] for k, v in CLIENT_FRAMES.items()}), ("server", SERVER_FRAMES)):
        for kind, schema in frames.items():
            name, key = _schema_name(kind, side), _message_key(kind, side)
            schemas[name] = schema
            messages[key] = {"name": kind, "title": f"{kind} ({'client to server' if side == 'client' else 'server to client'})",
                             "summary": schema.get("description", ""),
                             "payload": {"$ref": f"#/components/schemas/{name}"}}
            channel_messages[key] = {"$ref": f"#/components/messages/{key}"}
    for kind, (_, answer) in CLIENT_FRAMES.items():
        operation = {"action": "receive", "channel": {"$ref": "#/channels/socket"},
                     "summary": f"The client sends {kind}.",
                     "messages": [{"$ref": f"#/channels/socket/messages/{_message_key(kind, 'client')}"}]}
        if answer:
            operation["reply"] = {"channel": {"$ref": "#/channels/socket"},
                                  "messages": [{"$ref": f"#/channels/socket/messages/{_message_key(answer, 'server')}"},
                                               {"$ref": "#/channels/socket/messages/server_error"}]}
        operations[f"receive_{kind}"] = operation
    for kind in SERVER_FRAMES:
        operations[f"send_{kind}"] = {
            "action": "send", "channel": {"$ref": "#/channels/socket"}, "summary": f"The server sends {kind}.",
            "messages": [{"$ref": f"#/channels/socket/messages/{_message_key(kind, 'server')}"}]}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Care-team IM server: WebSocket",
            "version": spectacular_settings.VERSION,
            "description": "Real-time frames of the IM server (API.md, \"WebSocket\"). Frames are JSON text "
                           "objects with a `type`. This document describes the server: it *receives* the client "
                           "frames and *sends* the server frames. The REST API is described by /api/schema.\n\n"
                           "Close codes, so that a client knows whether to reconnect:\n" + _close_codes_text() +
                           "\n\nReconnect recipe: act on the code as above (any other code: reconnect with "
                           "exponential backoff and jitter), then for each group send `sync` from the last seq "
                           "seen until `has_more` is false.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": "127.0.0.1:8000", "protocol": "ws", "description": "`make run`; use wss behind TLS.",
                      "security": [{"$ref": "#/components/securitySchemes/accessToken"},
                                   {"$ref": "#/components/securitySchemes/sessionCookie"}]},
        },
        "channels": {
            "socket": {
                "address": "/ws/{user_id}",
                "title": "One user's connection",
                "description": "`/ws/{user_id}?token=<access token>`. A handshake without valid credentials, or "
                               "whose user_id is not the authenticated user, is accepted and closed at once with "
                               "4401 or 4403. A handshake with an `Origin` header is refused unless it is one of "
                               "the server's own hosts or listed in CORS_ALLOWED_ORIGINS.\n\nClose codes:\n"
                               + _close_codes_text(),
                "parameters": {"user_id": {"description": "The authenticated user's user_id (user_...)."}},
                "messages": channel_messages,
                "bindings": {"ws": {"bindingVersion": "0.1.0", "query": {
                    "type": "object",
                    "properties": {"token": {"type": "string", "description": "A JWT access token "
                                                                              "(POST /api/auth/token)."}}}}},
                "x-close-codes": CLOSE_CODES,
            },
        },
        "operations": operations,
        "components": {
            "securitySchemes": {
                "accessToken": {"type": "httpApiKey", "in": "query", "name": "token",
                                "description": "The access token in the query string."},
                "sessionCookie": {"type": "httpApiKey", "in": "cookie", "name": "sessionid",
                                  "description": "The Django session cookie (the web page, the browsable API)."},
            },
            "messages": messages,
            "schemas": schemas,
        },
    }


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True  # shared sub-schemas are written out in full, not as YAML anchors


@functools.cache
def document_yaml() -> str:
    return yaml.dump(document(), Dumper=_NoAliases, sort_keys=False, allow_unicode=True, width=120)


@require_GET
def asyncapi_view(request):
    """The AsyncAPI document; public, like /api/schema beside it."""
    return HttpResponse(document_yaml(), content_type="application/yaml; charset=utf-8")
