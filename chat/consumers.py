"""The WebSocket gateway: frames in become service calls, channel-layer events become frames."""
import asyncio
import functools
import json
from collections import Counter, deque
import time
from datetime import datetime, timezone

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError

from chat import realtime
from chat.models import Message, MsgType
from chat.serializers import message_data
from chat.services import UNSTORABLE, message_send
from groups.models import ChatGroup, GroupMember
from groups.permissions import group_by_public_id, require_member
from imserver.errors import NotGroupMember, ServiceError, ServiceUnavailable, ValidationFailed
from imserver.observability import PUSH_LATENCY, WS_OPEN, new_request_id, request_id_var


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

    # Open connections per user in this process (one event loop, so no lock is needed).
    _open_per_user: Counter = Counter()

    async def connect(self):
        """Accept only the authenticated user named in the path, then join their groups."""
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated or \
                self.scope["url_route"]["kwargs"]["user_id"] != self.user.user_id:
            await self.close(code=4401)
            return
        self.group_ids: set[str] = set()
        if self._open_per_user[self.user.pk] >= settings.WS_MAX_CONNECTIONS_PER_USER:
            await self.close(code=4429)
            return
        # Membership news first, so that a change committed while the memberships are read is not lost.
        await self.channel_layer.group_add(realtime.user_channel(self.user.user_id), self.channel_name)
        self.group_ids = {g["group_id"] for g in await self._memberships()}
        self.sent_times: deque[float] = deque()  # oldest first
        # Pushes go out in seq order, each once: `delivered` is the last seq this connection has had per group,
        # `pending` holds pushes that came before an earlier seq did, and a gap filler reads a seq whose push
        # is late or lost from the database.
        self.delivered: dict[str, int] = {}
        self.pending: dict[str, dict[int, str]] = {}
        self.gap_fillers: dict[str, asyncio.Task] = {}
        self.push_lock = asyncio.Lock()
        for group_id in self.group_ids:
            await self.channel_layer.group_add(realtime.group_channel(group_id), self.channel_name)
        # Read again once subscribed: a message after these last_seq values is pushed, one up to them is synced.
        groups = await self._memberships()
        self.delivered = {g["group_id"]: g["last_seq"] for g in groups}
        await self.accept()
        self._open_per_user[self.user.pk] += 1
        self.counted = True
        WS_OPEN.inc()
        await self._frame({"type": "connected", "user_id": self.user.user_id, "groups": groups,
                           "server_time": _now()})

    async def disconnect(self, code):
        """Leave every channel-layer group this connection joined."""
        if getattr(self, "counted", False):
            self.counted = False
            WS_OPEN.dec()
            self._open_per_user[self.user.pk] -= 1
            if not self._open_per_user[self.user.pk]:
                del self._open_per_user[self.user.pk]
        if not hasattr(self, "group_ids"):
            return
        for task in getattr(self, "gap_fillers", {}).values():
            task.cancel()
        for group_id in self.group_ids:
            await self.channel_layer.group_discard(realtime.group_channel(group_id), self.channel_name)
        await self.channel_layer.group_discard(realtime.user_channel(self.user.user_id), self.channel_name)

    async def dispatch(self, message):
        """AsyncConsumer.dispatch without its thread hop to close stale database connections before every event
        (each pushed message, for each connection): this consumer reaches the database only through
        database_sync_to_async, which closes them in its own thread."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def receive(self, text_data=None, bytes_data=None):
        """Parse one frame and answer it; a bad frame gets an error frame, never a close."""
        frame = {}
        request_id_var.set(new_request_id())  # one id per frame, carried into the logs and Celery
        try:
            raw = text_data if text_data is not None else bytes_data
            if raw is not None and _size(raw) > settings.WS_MAX_FRAME_BYTES:
                raise FrameTooLarge(f"Frames are limited to {settings.WS_MAX_FRAME_BYTES} bytes.")
            try:
                frame = json.loads(raw)
            except (TypeError, ValueError) as exc:
                raise FrameError("The frame is not valid JSON.") from exc
            # Checked once parsed, so that a refused send_message's error names its client_msg_id.
            self._check_rate()
            if not isinstance(frame, dict):
                raise FrameError("A frame must be a JSON object with a type.")
            if any(isinstance(value, str) and UNSTORABLE.search(value) for value in frame.values()):
                raise FrameError("Text may not contain NUL or unpaired surrogate characters.")
            kind = frame.get("type")
            handler = self.handlers.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise FrameError(f"Unknown frame type {frame.get('type')!r}.",
                                 details={"known": sorted(self.handlers)})
            await handler(self, frame)
        except (ServiceError, DatabaseError) as exc:
            if isinstance(exc, DatabaseError):  # the database is away for a moment; the client retries
                exc = ServiceUnavailable()
            error = {"type": "error", "code": exc.code, "message": exc.message}
            if isinstance(frame, dict) and frame.get("client_msg_id") is not None:
                error["client_msg_id"] = frame["client_msg_id"]
            await self._frame(error)

    def _check_rate(self):
        now = time.monotonic()
        window_start = now - settings.WS_RATE_INTERVAL
        while self.sent_times and self.sent_times[0] <= window_start:
            self.sent_times.popleft()
        if len(self.sent_times) >= settings.WS_RATE_MESSAGES:
            raise RateLimitedFrame(
                f"At most {settings.WS_RATE_MESSAGES} frames per {settings.WS_RATE_INTERVAL:g} s; slow down.")
        self.sent_times.append(now)

    # --- client frames --------------------------------------------------------------------------

    async def on_send_message(self, frame):
        group_id, content = _group_id(frame), _required(frame, "content")
        message = await self._send(group_id, content, frame.get("msg_type") or MsgType.TEXT,
                                   frame.get("client_msg_id"))
        await self._frame({"type": "message_ack", "client_msg_id": frame.get("client_msg_id"), "message": message})

    async def on_sync(self, frame):
        group_id = _group_id(frame)
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
        group_id = _group_id(frame)
        if group_id not in self.group_ids:
            await self._check_member(group_id)
        await self.channel_layer.group_send(realtime.group_channel(group_id), {
            "type": "group.event",
            "frame": {"type": "typing", "group_id": group_id, "user_id": self.user.user_id},
        })

    handlers = {"send_message": on_send_message, "sync": on_sync, "ping": on_ping, "typing": on_typing}

    # --- channel-layer events -------------------------------------------------------------------

    async def chat_message(self, event):
        """A stored message of one of this user's groups, its frame already JSON text: sent in seq order."""
        group_id, seq = event["group_id"], event["seq"]
        if group_id not in self.group_ids or seq <= self.delivered.get(group_id, 0):
            return  # a repeat, or a message the client syncs (at or before its `connected` last_seq)
        if seq == self.delivered.get(group_id, 0) + 1 and group_id not in self.gap_fillers:
            await self._deliver(group_id, seq, event["text"])  # the usual case: in order, nothing held
        else:
            await self._ordered(group_id, seq, event["text"])
        PUSH_LATENCY.observe(max(0.0, time.time() - event.get("sent_at", time.time())))

    async def _ordered(self, group_id: str, seq: int, text: str):
        """Deliver, hold or drop a push while a gap of its group is open (the gap filler may be delivering)."""
        async with self.push_lock:
            if seq == self.delivered.get(group_id, 0) + 1:
                await self._deliver(group_id, seq, text)
                if group_id in self.pending:
                    await self._flush(group_id)
            elif seq > self.delivered.get(group_id, 0):
                # A later seq came first: a concurrent sender's commit published before an earlier one's.
                self.pending.setdefault(group_id, {})[seq] = text
                if group_id not in self.gap_fillers:
                    self.gap_fillers[group_id] = asyncio.create_task(self._fill_gap(group_id))

    async def _deliver(self, group_id: str, seq: int, text: str):
        self.delivered[group_id] = seq
        await self.send(text_data=text)

    async def _flush(self, group_id: str):
        """Send the held pushes that now follow on; stop the gap filler once nothing is held."""
        pending = self.pending.get(group_id, {})
        while (seq := self.delivered.get(group_id, 0) + 1) in pending:
            await self._deliver(group_id, seq, pending.pop(seq))
        for seq in [s for s in pending if s <= self.delivered.get(group_id, 0)]:
            del pending[seq]
        if not pending:
            self.pending.pop(group_id, None)
            filler = self.gap_fillers.pop(group_id, None)
            if filler is not None and filler is not asyncio.current_task():
                filler.cancel()

    async def _fill_gap(self, group_id: str):
        """Wait a moment for the missing pushes; then read the missing messages from the database."""
        await asyncio.sleep(settings.WS_PUSH_REORDER_WAIT)
        async with self.push_lock:
            while self.pending.get(group_id) and group_id in self.group_ids:
                missed = await self._since(group_id, self.delivered.get(group_id, 0))
                for frame in missed:
                    if frame["seq"] == self.delivered.get(group_id, 0) + 1:
                        await self._deliver(group_id, frame["seq"], realtime.frame_text(frame))
                await self._flush(group_id)
                if not missed:
                    break
            self.pending.pop(group_id, None)
            self.gap_fillers.pop(group_id, None)

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
        group_id = frame["group_id"]
        channel = realtime.group_channel(group_id)
        if frame["type"] == "member_joined":
            followed = group_id in self.group_ids
            self.group_ids.add(group_id)
            await self.channel_layer.group_add(channel, self.channel_name)
            await self._frame(frame)
            # Messages sent since the join were pushed to the group before this connection listened.
            if not followed and event.get("last_seq") is not None:
                async with self.push_lock:
                    self.delivered[group_id] = event["last_seq"]
                    for message in await self._since(group_id, event["last_seq"]):
                        if message["seq"] == self.delivered[group_id] + 1:
                            await self._deliver(group_id, message["seq"], realtime.frame_text(message))
                    if group_id in self.pending:
                        await self._flush(group_id)
        else:
            self.group_ids.discard(group_id)
            self.delivered.pop(group_id, None)
            self.pending.pop(group_id, None)
            filler = self.gap_fillers.pop(group_id, None)
            if filler is not None:
                filler.cancel()
            await self.channel_layer.group_discard(channel, self.channel_name)
            await self._frame(frame)

    # --- helpers --------------------------------------------------------------------------------

    async def _frame(self, frame: dict):
        await self.send(text_data=realtime.frame_text(frame))

    @database_sync_to_async
    def _memberships(self) -> list[dict]:
        return [{"group_id": gid, "last_seq": seq} for gid, seq in
                GroupMember.objects.filter(user=self.user).order_by("group_id")
                .values_list("group__group_id", "group__last_seq")]

    # In a thread pool, not the process's one thread for sync code: sends of different connections overlap
    # their database round trips (the group's row lock orders them); one connection's frames stay in order.
    @functools.partial(database_sync_to_async, thread_sensitive=False)
    def _send(self, group_id, content, msg_type, client_msg_id) -> dict:
        if msg_type not in (MsgType.TEXT, MsgType.IMAGE):
            raise ValidationFailed("msg_type must be TEXT or IMAGE.")
        group = group_by_public_id(str(group_id), for_user=self.user)
        message, _ = message_send(sender=self.user, group=group, content=content,
                                  msg_type=msg_type, client_msg_id=client_msg_id, via="websocket")
        return message_data(message)

    @database_sync_to_async
    def _catch_up(self, group_id, after_seq, limit) -> tuple[list, bool]:
        group = group_by_public_id(str(group_id))
        require_member(self.user, group)
        messages, has_more = Message.objects.catch_up(group, after_seq=after_seq, limit=limit)
        return [message_data(m) for m in messages], has_more

    @database_sync_to_async
    def _since(self, group_id, after_seq) -> list[dict]:
        group = ChatGroup.objects.filter(group_id=group_id).first()
        if group is None:
            return []
        messages, _ = Message.objects.catch_up(group, after_seq=after_seq, limit=settings.IM_SYNC_LIMIT_MAX)
        return [realtime.message_frame(m) for m in messages]

    @database_sync_to_async
    def _check_member(self, group_id):
        """Typing is for members only (staff included): refuse with NOT_FOUND or NOT_GROUP_MEMBER."""
        group = group_by_public_id(str(group_id))
        if not GroupMember.objects.filter(group=group, user=self.user).exists():
            raise NotGroupMember(details={"group_id": group.group_id})


def _required(frame: dict, field: str):
    value = frame.get(field)
    if value is None or value == "" and field != "content":
        raise FrameError(f"The frame lacks {field}.", details={field: ["required"]})
    return value


def _group_id(frame: dict) -> str:
    group_id = _required(frame, "group_id")
    if not isinstance(group_id, str):
        raise FrameError("group_id must be a string.", details={"group_id": ["Not a string."]})
    return group_id


def _size(raw: str | bytes) -> int:
    """A frame's size in bytes, as it travelled (text frames are UTF-8)."""
    return len(raw.encode()) if isinstance(raw, str) else len(raw)
