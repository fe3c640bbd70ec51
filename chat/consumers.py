"""The WebSocket gateway: frames in become service calls, channel-layer events become frames."""
import json
import time
from datetime import datetime, timezone

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chat import realtime
from chat.models import Message, MsgType
from chat.serializers import message_data
from chat.services import message_send
from groups.models import ChatGroup, GroupMember
from groups.permissions import group_by_public_id, require_member
from imserver.errors import ServiceError, ValidationFailed


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class FrameError(ServiceError):
    pass


class RateLimitedFrame(ServiceError):
    code = "RATE_LIMITED"


class FrameTooLarge(ServiceError):
    code = "PAYLOAD_TOO_LARGE"


class ChatConsumer(AsyncWebsocketConsumer):
    """One client connection: `/ws/{user_id}`."""

    async def connect(self):
        """Accept only the authenticated user named in the path, then join their groups."""
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated or \
                self.scope["url_route"]["kwargs"]["user_id"] != self.user.user_id:
            await self.close(code=4401)
            return
        groups = await self._memberships()
        self.group_ids = {g["group_id"] for g in groups}
        self.sent_times: list[float] = []
        for group_id in self.group_ids:
            await self.channel_layer.group_add(realtime.group_channel(group_id), self.channel_name)
        await self.channel_layer.group_add(realtime.user_channel(self.user.user_id), self.channel_name)
        await self.accept()
        await self._frame({"type": "connected", "user_id": self.user.user_id, "groups": groups,
                           "server_time": _now()})

    async def disconnect(self, code):
        """Leave every channel-layer group this connection joined."""
        if not hasattr(self, "group_ids"):
            return
        for group_id in self.group_ids:
            await self.channel_layer.group_discard(realtime.group_channel(group_id), self.channel_name)
        await self.channel_layer.group_discard(realtime.user_channel(self.user.user_id), self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        """Parse one frame and answer it; a bad frame gets an error frame, never a close."""
        frame = {}
        try:
            self._check_rate()
            raw = text_data if text_data is not None else bytes_data
            if raw is not None and len(raw) > settings.WS_MAX_FRAME_BYTES:
                raise FrameTooLarge(f"Frames are limited to {settings.WS_MAX_FRAME_BYTES} bytes.")
            try:
                frame = json.loads(raw)
            except (TypeError, ValueError) as exc:
                raise FrameError("The frame is not valid JSON.") from exc
            if not isinstance(frame, dict):
                raise FrameError("A frame must be a JSON object with a type.")
            handler = self.handlers.get(frame.get("type"))
            if handler is None:
                raise FrameError(f"Unknown frame type {frame.get('type')!r}.",
                                 details={"known": sorted(self.handlers)})
            await handler(self, frame)
        except ServiceError as exc:
            error = {"type": "error", "code": exc.code, "message": exc.message}
            if isinstance(frame, dict) and frame.get("client_msg_id") is not None:
                error["client_msg_id"] = frame["client_msg_id"]
            await self._frame(error)

    def _check_rate(self):
        now = time.monotonic()
        window_start = now - settings.WS_RATE_INTERVAL
        self.sent_times = [t for t in self.sent_times if t > window_start]
        if len(self.sent_times) >= settings.WS_RATE_MESSAGES:
            raise RateLimitedFrame(
                f"At most {settings.WS_RATE_MESSAGES} frames per {settings.WS_RATE_INTERVAL:g} s; slow down.")
        self.sent_times.append(now)

    # --- client frames --------------------------------------------------------------------------

    async def on_send_message(self, frame):
        group_id, content = _required(frame, "group_id"), _required(frame, "content")
        message = await self._send(group_id, content, frame.get("msg_type") or MsgType.TEXT,
                                   frame.get("client_msg_id"))
        await self._frame({"type": "message_ack", "client_msg_id": frame.get("client_msg_id"), "message": message})

    async def on_sync(self, frame):
        group_id = _required(frame, "group_id")
        after_seq = frame.get("after_seq", 0)
        limit = frame.get("limit", settings.IM_SYNC_LIMIT_DEFAULT)
        for name, value, low, high in (("after_seq", after_seq, 0, None),
                                       ("limit", limit, 1, settings.IM_SYNC_LIMIT_MAX)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low or (high and value > high):
                raise FrameError(f"{name} must be an integer from {low}" + (f" to {high}." if high else "."))
        messages, has_more = await self._catch_up(group_id, after_seq, limit)
        await self._frame({"type": "sync_result", "group_id": group_id, "messages": messages,
                           "has_more": has_more})

    async def on_ping(self, frame):
        await self._frame({"type": "pong", "server_time": _now()})

    async def on_typing(self, frame):
        group_id = _required(frame, "group_id")
        if group_id not in self.group_ids:
            await self._check_member(group_id)
        await self.channel_layer.group_send(realtime.group_channel(group_id), {
            "type": "group.event",
            "frame": {"type": "typing", "group_id": group_id, "user_id": self.user.user_id},
        })

    handlers = {"send_message": on_send_message, "sync": on_sync, "ping": on_ping, "typing": on_typing}

    # --- channel-layer events -------------------------------------------------------------------

    async def chat_message(self, event):
        """A stored message of one of this user's groups."""
        if event["frame"]["group_id"] in self.group_ids:
            await self._frame(event["frame"])

    async def group_event(self, event):
        """Typing, AI status and membership news of a group; the user's own arrive by other means."""
        frame = event["frame"]
        if frame["group_id"] not in self.group_ids:
            return
        if frame.get("user_id") == self.user.user_id and frame["type"] in ("typing", "member_joined",
                                                                             "member_left"):
            return
        await self._frame(frame)

    async def membership_changed(self, event):
        """This user joined or left a group: follow it at once, then tell the client."""
        frame = event["frame"]
        channel = realtime.group_channel(frame["group_id"])
        if frame["type"] == "member_joined":
            self.group_ids.add(frame["group_id"])
            await self.channel_layer.group_add(channel, self.channel_name)
        else:
            self.group_ids.discard(frame["group_id"])
            await self.channel_layer.group_discard(channel, self.channel_name)
        await self._frame(frame)

    # --- helpers --------------------------------------------------------------------------------

    async def _frame(self, frame: dict):
        await self.send(text_data=json.dumps(frame, separators=(",", ":")))

    @database_sync_to_async
    def _memberships(self) -> list[dict]:
        return [{"group_id": gid, "last_seq": seq} for gid, seq in
                GroupMember.objects.filter(user=self.user).order_by("group_id")
                .values_list("group__group_id", "group__last_seq")]

    @database_sync_to_async
    def _send(self, group_id, content, msg_type, client_msg_id) -> dict:
        if msg_type not in (MsgType.TEXT, MsgType.IMAGE):
            raise ValidationFailed("msg_type must be TEXT or IMAGE.")
        message, _ = message_send(sender=self.user, group=group_by_public_id(str(group_id)), content=content,
                                  msg_type=msg_type, client_msg_id=client_msg_id)
        return message_data(message)

    @database_sync_to_async
    def _catch_up(self, group_id, after_seq, limit) -> tuple[list, bool]:
        group = group_by_public_id(str(group_id))
        require_member(self.user, group)
        messages, has_more = Message.objects.catch_up(group, after_seq=after_seq, limit=limit)
        return [message_data(m) for m in messages], has_more

    @database_sync_to_async
    def _check_member(self, group_id):
        group = ChatGroup.objects.filter(group_id=str(group_id)).first()
        if group is None:
            group_by_public_id(str(group_id))
        require_member(self.user, group)


def _required(frame: dict, field: str):
    value = frame.get(field)
    if value is None or value == "" and field != "content":
        raise FrameError(f"The frame lacks {field}.", details={field: ["required"]})
    return value
