"""The WebSocket gateway: frames in become service calls, channel-layer events become frames."""
import asyncio
import functools
import logging
import time
from datetime import datetime, timezone

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chat import frames, realtime, slots
from chat.fanout import fanout_for
from chat.models import Message, MsgType
from chat.ordering import PushSequencer
from chat.serializers import SEQ_MAX, message_data
from chat.services import message_send, message_send_direct
from groups.models import ChatGroup, GroupMember
from groups.permissions import group_by_public_id, group_with_role, require_member
from groups.services import read_mark
from imserver import publish
from imserver.dbrouter import replica_read
from imserver.errors import InternalError, NotGroupMember, ServiceError, ServiceUnavailable, database_unavailable
from imserver.metrics import PUSH_LATENCY, WS_OPEN
from imserver.patches import DispatchWithoutConnectionCloseMixin
from imserver.requestid import new_request_id, request_id_var
from imserver.server import SLOW_READER

logger = logging.getLogger(__name__)

# The contract's close codes, so that a client knows whether to reconnect.
CLOSE_TOKEN_INVALID = 4401  # refresh the token, then reconnect
CLOSE_NOT_ALLOWED = 4403  # deactivated, deleted, or not this user's path: do not retry
CLOSE_TOO_MANY = 4429  # the user's connection cap: retry later with backoff


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class ChatConsumer(DispatchWithoutConnectionCloseMixin, AsyncWebsocketConsumer):
    """One client connection: `/ws/{user_id}`. Its dispatch skips channels' thread hop to close stale database
    connections before every event (imserver.patches): it reaches the database only through
    database_sync_to_async, which closes them in its own thread."""

    async def __call__(self, scope, receive, send):
        """Run the connection; whatever ends it (a close, a crash, a cancel), its slot and groups are let go."""
        self.slot_taken = self.counted = self.closing = False
        self.group_ids: set[str] = set()
        self.gap_fillers: dict[str, asyncio.Task] = {}
        self.read_cooldowns: dict[str, asyncio.Task] = {}  # group_id -> the wait after a written read
        self.reads_held: dict[str, int] = {}  # group_id -> the highest seq read during that wait
        self.expiry: asyncio.Task | None = None
        self.early: list[dict] | None = []  # group events handed over before the `connected` frame left
        self.early_bytes = 0  # their frames' size, bounded by WS_MAX_QUEUED_BYTES
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._let_go()

    async def connect(self):
        """Accept only the authenticated, active user named in the path, within their connection cap."""
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            return await self._refuse(self.scope.get("auth_refusal", CLOSE_TOKEN_INVALID))
        if not self.user.is_active or self.scope["url_route"]["kwargs"]["user_id"] != self.user.user_id:
            return await self._refuse(CLOSE_NOT_ALLOWED)
        if not await slots.slot_take(user_id=self.user.user_id, channel_name=self.channel_name):
            return await self._refuse(CLOSE_TOO_MANY)
        self.slot_taken = True
        self.frame_rate = frames.FrameRate()
        self.sequencer = PushSequencer()
        self.push_lock = asyncio.Lock()  # frames of one connection leave in the order they were decided
        self.fanout = fanout_for(self.channel_layer)
        # Membership news first, so that a change committed while the memberships are read is not lost.
        await self.channel_layer.group_add(publish.user_channel(self.user.user_id), self.channel_name)
        self.group_ids = {g["group_id"] for g in await self._memberships()}
        for group_id in self.group_ids:
            await self.fanout.follow(group_id, self)
        # Read again once subscribed: a message after these last_seq values is pushed, one up to them is synced.
        groups = await self._connected_groups()
        for group in groups:
            self.sequencer.follow(group["group_id"], group["last_seq"])
        await self.accept()
        WS_OPEN.inc()
        self.counted = True
        if self.scope.get("token_expires_at") is not None:
            self.expiry = asyncio.create_task(self._close_at(self.scope["token_expires_at"]))
        await self._write_frame({"type": "connected", "user_id": self.user.user_id, "groups": groups,
                                 "server_time": _now()})
        early, self.early = self.early, None
        if self.early_bytes > settings.WS_MAX_QUEUED_BYTES:
            logger.warning("pushes held during the handshake passed WS_MAX_QUEUED_BYTES: closed with 4008",
                           extra={"user_id": self.user.user_id, "held_bytes": self.early_bytes})
            return await self._close(SLOW_READER)  # as the server closes a slow reader
        for event in early:
            await self.dispatch(event)

    async def _refuse(self, code: int):
        # Accepted first, so that the client sees the code (a refused handshake is only an HTTP 403 to it).
        self.closing = True
        await self.accept()
        await self.close(code=code)

    async def _close_at(self, expires_at: float):
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        await self._close(CLOSE_TOKEN_INVALID)

    async def _close(self, code: int):
        """Close with `code`; nothing more reaches this connection from now on."""
        if self.closing:
            return
        self.closing = True
        await self.close(code=code)
        await self._let_go()

    async def _let_go(self):
        """Leave every channel-layer group and give the connection's slot back; once, on any exit path."""
        if self.expiry is not None and self.expiry is not asyncio.current_task():
            self.expiry.cancel()
        for task in self.gap_fillers.values():
            task.cancel()
        self.gap_fillers.clear()
        if self.counted:
            self.counted = False
            WS_OPEN.dec()
        group_ids, self.group_ids = self.group_ids, set()
        if self.slot_taken:
            self.slot_taken = False
            try:
                for group_id in group_ids:
                    await self.fanout.unfollow(group_id, self)
                await self.channel_layer.group_discard(publish.user_channel(self.user.user_id), self.channel_name)
            finally:
                await slots.slot_give_back(user_id=self.user.user_id, channel_name=self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        """Parse one frame and answer it; a bad frame gets an error frame, never a close."""
        if self.closing:
            return
        frame = {}
        request_id_var.set(new_request_id())  # one id per frame, carried into the logs and Celery
        try:
            frame = frames.parse(text_data if text_data is not None else bytes_data)
            self.frame_rate.hit()  # after parsing, so that a refused send_message's error names its client_msg_id
            handler = self.handlers.get(frame["type"])
            if handler is None:
                raise frames.FrameError(f"Unknown frame type {frame['type']!r}.",
                                        details={"known": sorted(self.handlers)})
            await handler(self, frame)
        except Exception as exc:  # noqa: BLE001 - a frame never ends the connection by itself
            await self._write_error(exc, frame)

    async def _write_error(self, exc: Exception, frame: dict):
        if database_unavailable(exc):  # the database is away for a moment; the client retries
            exc = ServiceUnavailable()
        elif not isinstance(exc, ServiceError):
            logger.error("frame failed", exc_info=exc)
            exc = InternalError()
        error = {"type": "error", "code": exc.code, "message": exc.message}
        if frame.get("client_msg_id") is not None:
            error["client_msg_id"] = frame["client_msg_id"]
        await self._write_frame(error)

    # --- client frames --------------------------------------------------------------------------

    async def on_send_message(self, frame):
        group_id, content = frames.group_id(frame), frames.required(frame, "content")
        message = await self._store_message(group_id, content, frame.get("msg_type") or MsgType.TEXT,
                                            frame.get("client_msg_id"))
        await self._write_frame({"type": "message_ack", "client_msg_id": frame.get("client_msg_id"),
                                 "message": message})

    async def on_sync(self, frame):
        group_id = frames.group_id(frame)
        after_seq = frames.integer(frame, "after_seq", default=0, low=0)
        limit = frames.integer(frame, "limit", default=settings.IM_SYNC_LIMIT_DEFAULT, low=1,
                               high=settings.IM_SYNC_LIMIT_MAX)
        messages, has_more = await self._catch_up(group_id, after_seq, limit)
        await self._write_frame({"type": "sync_result", "group_id": group_id, "messages": messages,
                                 "has_more": has_more})

    async def on_ping(self, frame):
        await self._write_frame({"type": "pong", "server_time": _now()})

    async def on_typing(self, frame):
        group_id = frames.group_id(frame)
        if group_id not in self.group_ids:
            await self._check_member(group_id)
        await self.channel_layer.group_send(publish.group_channel(group_id), publish.group_event_message(
            group_id, {"type": "typing", "group_id": group_id, "user_id": self.user.user_id}))

    async def on_read(self, frame):
        """Move the user's read watermark. Clients read per screenful: of a burst of reads of one group, the first
        is written at once and the highest of the rest when IM_READ_COALESCE_SECONDS have passed."""
        group_id = frames.group_id(frame)
        seq = frames.integer(frame, "seq", default=-1, low=0, high=SEQ_MAX)
        if group_id not in self.group_ids:
            raise NotGroupMember(details={"group_id": group_id})
        if group_id in self.read_cooldowns:
            self.reads_held[group_id] = max(seq, self.reads_held.get(group_id, 0))
            return
        await self._read_mark(group_id, seq)
        self.read_cooldowns[group_id] = asyncio.create_task(self._read_cooldown(group_id))

    handlers = {"send_message": on_send_message, "sync": on_sync, "ping": on_ping, "typing": on_typing,
                "read": on_read}

    async def _read_cooldown(self, group_id: str):
        """Write the highest read held during each interval until one passes without any (also after a close)."""
        try:
            while True:
                await asyncio.sleep(settings.IM_READ_COALESCE_SECONDS)
                seq = self.reads_held.pop(group_id, None)
                if seq is None:
                    return
                try:
                    await self._read_mark(group_id, seq)
                except ServiceError:
                    return  # left the group meanwhile
                except Exception:  # noqa: BLE001 - a held read is a hint: the client reads again
                    logger.warning("held read of %s failed", group_id, exc_info=True)
        finally:
            if self.read_cooldowns.get(group_id) is asyncio.current_task():
                del self.read_cooldowns[group_id]

    # --- channel-layer events -------------------------------------------------------------------

    async def fanout_event(self, event):
        """An event of one of the user's groups, handed over by the process's fan-out (chat.fanout); held until
        the `connected` frame has left. What is held is bounded as a slow reader's backlog is: past
        WS_MAX_QUEUED_BYTES nothing more is kept, and the connection is closed with 4008 once accepted (the
        client reconnects and syncs; a dropped push would otherwise be missed until the group's next one)."""
        if self.early is None:
            await self.dispatch(event)
        elif self.early_bytes <= settings.WS_MAX_QUEUED_BYTES:
            self.early.append(event)
            self.early_bytes += len(event["text"] if "text" in event else publish.frame_text(event.get("frame", {})))

    async def chat_message(self, event):
        """A stored message of one of this user's groups, its frame already JSON text: sent in seq order."""
        if self.closing:
            return
        group_id = event["group_id"]
        async with self.push_lock:
            await self._write_texts(self.sequencer.offer(group_id, event["seq"], event["text"]))
        if self.sequencer.has_gap(group_id) and group_id not in self.gap_fillers:
            self.gap_fillers[group_id] = asyncio.create_task(self._fill_gap(group_id))
        PUSH_LATENCY.observe(max(0.0, time.time() - event.get("sent_at", time.time())))

    async def _fill_gap(self, group_id: str):
        """Read from the database what a push held for WS_PUSH_REORDER_WAIT still waits for. Under load some push
        of a busy group is nearly always held for a moment, each for a gap that its push soon closes: only one
        that stays open that long is read."""
        try:
            while (since := self.sequencer.held_since(group_id)) is not None:
                wait = since + settings.WS_PUSH_REORDER_WAIT - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                last = self.sequencer.last(group_id)
                await self._catch_up_pushes(group_id, last)
                if self.sequencer.last(group_id) == last:  # the database had nothing more: the client syncs
                    self.sequencer.drop_held(group_id)
        finally:
            if self.gap_fillers.get(group_id) is asyncio.current_task():
                del self.gap_fillers[group_id]

    async def _catch_up_pushes(self, group_id: str, after_seq: int):
        stored = await self._since(group_id, after_seq)
        async with self.push_lock:
            await self._write_texts(self.sequencer.fill(group_id, stored))

    async def group_event(self, event):
        """Typing, AI status and membership news of a group; the user's own arrive by other means."""
        frame = event["frame"]
        if self.closing or frame["group_id"] not in self.group_ids:
            return
        if frame.get("user_id") == self.user.user_id and frame["type"] in ("typing", "member_joined",
                                                                             "member_left"):
            return
        await self._write_frame(frame)

    async def membership_changed(self, event):
        """This user joined or left a group: follow it at once, then tell the client."""
        if self.closing:
            return
        frame = event["frame"]
        group_id = frame["group_id"]
        if frame["type"] == "member_joined":
            followed = group_id in self.group_ids
            self.group_ids.add(group_id)
            await self.fanout.follow(group_id, self)
            await self._write_frame(frame)
            # Messages sent since the join were pushed to the group before this connection listened.
            if not followed and event.get("last_seq") is not None:
                self.sequencer.follow(group_id, event["last_seq"])
                await self._catch_up_pushes(group_id, event["last_seq"])
        else:
            self.group_ids.discard(group_id)
            self.sequencer.forget(group_id)
            filler = self.gap_fillers.pop(group_id, None)
            if filler is not None:
                filler.cancel()
            await self.fanout.unfollow(group_id, self)
            await self._write_frame(frame)

    async def direct_event(self, event):
        """A frame for this user alone (an AI draft or an escalation for a group's doctors)."""
        if not self.closing and event["frame"]["group_id"] in self.group_ids:
            await self._write_frame(event["frame"])

    async def connection_revoke(self, event):
        """The user was deactivated or deleted: close at once, on every server process."""
        await self._close(event["code"])

    # --- helpers --------------------------------------------------------------------------------

    async def _write_frame(self, frame: dict):
        await self.send(text_data=publish.frame_text(frame))

    async def _write_texts(self, texts: list[str]):
        for text in texts:
            await self.send(text_data=text)

    @database_sync_to_async
    def _memberships(self) -> list[dict]:
        return [{"group_id": gid, "last_seq": seq} for gid, seq in
                GroupMember.objects.filter(user=self.user).order_by("group_id")
                .values_list("group__group_id", "group__last_seq")]

    @database_sync_to_async
    def _connected_groups(self) -> list[dict]:
        """The `connected` frame's groups: last_seq, and the user's read state."""
        rows = (ChatGroup.objects.filter(memberships__user=self.user).with_read_state(self.user).order_by("pk")
                .values_list("group_id", "last_seq", "read_seq", "unread"))
        return [{"group_id": group_id, "last_seq": last_seq, "last_read_seq": read_seq, "unread_count": unread}
                for group_id, last_seq, read_seq, unread in rows]

    @database_sync_to_async
    def _read_mark(self, group_id: str, seq: int) -> int:
        return read_mark(group=group_by_public_id(group_id), user=self.user, seq=seq)

    async def _store_message(self, group_id, content, msg_type, client_msg_id) -> dict:
        """On the event loop when it can be (chat.services.message_send_direct), else through the ORM."""
        sent = await message_send_direct(sender=self.user, group_id=group_id, content=content, msg_type=msg_type,
                                         client_msg_id=client_msg_id, via="websocket")
        if sent is None:
            return await self._store_message_orm(group_id, content, msg_type, client_msg_id)
        return message_data(sent[0])

    # In a thread pool, not the process's one thread for sync code: sends of different connections overlap
    # their database round trips (the group's row lock orders them); one connection's frames stay in order.
    @functools.partial(database_sync_to_async, thread_sensitive=False)
    def _store_message_orm(self, group_id, content, msg_type, client_msg_id) -> dict:
        group, role = group_with_role(group_id, self.user)
        message, _ = message_send(sender=self.user, group=group, content=content, msg_type=msg_type,
                                  client_msg_id=client_msg_id, via="websocket", sender_role=role)
        return message_data(message)

    @database_sync_to_async
    def _catch_up(self, group_id, after_seq, limit) -> tuple[list, bool]:
        group = group_by_public_id(group_id)
        require_member(self.user, group)

        def read():  # on a replica only if it holds the group up to the last_seq just read from the primary
            messages, has_more = Message.objects.catch_up(group, after_seq=after_seq, limit=limit)
            return [message_data(m) for m in messages], has_more

        return replica_read(read, group=group)

    @database_sync_to_async
    def _since(self, group_id, after_seq) -> list[tuple[int, str]]:
        group = ChatGroup.objects.filter(group_id=group_id).first()
        if group is None:
            return []
        messages, _ = Message.objects.catch_up(group, after_seq=after_seq, limit=settings.IM_SYNC_LIMIT_MAX)
        return [(m.seq, publish.frame_text(realtime.message_frame(m))) for m in messages]

    @database_sync_to_async
    def _check_member(self, group_id):
        """Typing is for members only (staff included): refuse with NOT_FOUND or NOT_GROUP_MEMBER."""
        group = group_by_public_id(group_id)
        if not GroupMember.objects.filter(group=group, user=self.user).exists():
            raise NotGroupMember(details={"group_id": group.group_id})
