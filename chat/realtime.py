"""Channel-layer names and the pushes that follow a commit."""
import asyncio
import functools
import json
import logging
import os
import threading
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from chat.models import MsgType
from chat.serializers import message_data
from groups.models import GroupMember

logger = logging.getLogger(__name__)
_own_loop_wanted = False
_server_loop: asyncio.AbstractEventLoop | None = None  # the ASGI server's event loop, once it has served
_publisher: tuple[int, asyncio.AbstractEventLoop] | None = None  # (pid, loop): a forked child starts its own
_publisher_lock = threading.Lock()


def publish_from_own_loop() -> None:
    """Publish through one event loop that lives as long as the process (for Celery workers).

    Outside a server there is no event loop for async_to_sync to return to, so each push would run in a loop of
    its own, and the Redis channel layer would open (and drop) its connections for every one of them."""
    global _own_loop_wanted
    _own_loop_wanted = True


def publish_on(loop: asyncio.AbstractEventLoop) -> None:
    """The server's event loop: pushes decided in its threads are handed to it without waiting (imserver.asgi)."""
    global _server_loop
    _server_loop = loop


def _publisher_loop() -> asyncio.AbstractEventLoop:
    global _publisher
    with _publisher_lock:
        if _publisher is None or _publisher[0] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="channel-layer", daemon=True).start()
            _publisher = (os.getpid(), loop)
        return _publisher[1]


def group_channel(group_id: str) -> str:
    """The channel-layer group every connection of a group's members joins."""
    return f"grp.{group_id}"


def user_channel(user_id: str) -> str:
    """The channel-layer group of one user's connections, for membership changes."""
    return f"usr.{user_id}"


def message_frame(message) -> dict:
    """The push frame of a stored message: its fields at top level plus `type`."""
    data = message_data(message)
    data["type"] = "ai_reply" if message.msg_type == MsgType.AI_REPLY else "message"
    return data


def frame_text(frame: dict) -> str:
    """A frame as the JSON text sent on the WebSocket."""
    return json.dumps(frame, separators=(",", ":"))


def _publish(channel_group: str, event: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _server_loop
    if loop is not None and loop.is_running():
        # A request's or a frame's thread: the push goes to the loop that owns the channel layer's connections,
        # and the thread goes on (answering the sender) instead of waiting for Redis. Pushes of one thread keep
        # their order; receivers order pushes by seq anyway.
        try:
            future = asyncio.run_coroutine_threadsafe(layer.group_send(channel_group, event), loop)
        except RuntimeError:  # the loop closed meanwhile
            pass
        else:
            future.add_done_callback(functools.partial(_publish_done, channel_group))
            return
    try:
        if _own_loop_wanted:
            asyncio.run_coroutine_threadsafe(layer.group_send(channel_group, event), _publisher_loop()).result(
                timeout=settings.REDIS_SOCKET_TIMEOUT * 2)
        else:
            async_to_sync(layer.group_send)(channel_group, event)
    except Exception:  # noqa: BLE001 - a push failure never undoes a stored message; clients sync.
        logger.warning("push to %s failed", channel_group, exc_info=True)


def _publish_done(channel_group: str, future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("push to %s failed", channel_group, exc_info=future.exception())


def message_push(message) -> None:
    """Push a stored message to every connection of its group (called on commit).

    The frame is serialized here, once, not by each connection; group_id and seq ride along for the
    connections' filters."""
    frame = message_frame(message)
    _publish(group_channel(frame["group_id"]), {"type": "chat.message", "group_id": frame["group_id"],
                                                "seq": frame["seq"], "text": frame_text(frame),
                                                "sent_at": time.time()})


def member_joined(*, member) -> None:
    """Tell the new member's own connections to follow the group, and the group who came."""
    frame = {"type": "member_joined", "group_id": member.group.group_id, "user_id": member.user.user_id,
             "user_role": member.user_role}
    # The group's last_seq as the caller saw it before the join: the member's connections subscribe only
    # when they handle this event, so they fetch what was pushed after it in between.
    _publish(user_channel(member.user.user_id), {"type": "membership.changed", "frame": frame,
                                                  "last_seq": member.group.last_seq})
    _publish(group_channel(member.group.group_id), {"type": "group.event", "frame": frame})


def connections_close(user_id: str, *, code: int) -> None:
    """Close every connection of the user, on every server process, with `code` (4403: deactivated)."""
    _publish(user_channel(user_id), {"type": "connection.revoke", "code": code})


def member_left(*, group_id: str, user_id: str, user_role: str) -> None:
    """A membership is gone (removed, or deleted with its user or group): its connections leave at once."""
    frame = {"type": "member_left", "group_id": group_id, "user_id": user_id, "user_role": user_role}
    _publish(group_channel(group_id), {"type": "group.event", "frame": frame})
    _publish(user_channel(user_id), {"type": "membership.changed", "frame": frame})


def role_event(*, group, role: str, frame: dict) -> None:
    """Push a frame to the connections of the group's members with this in-group role only (drafts and
    escalations are for its doctors): through each one's own channel, never the group's."""
    for user_id in GroupMember.objects.filter(group=group, user_role=role).values_list("user__user_id", flat=True):
        _publish(user_channel(user_id), {"type": "direct.event", "frame": frame})


def group_event(group_id: str, frame: dict) -> None:
    """Push any frame (typing, ai_status) to a group's connections."""
    _publish(group_channel(group_id), {"type": "group.event", "frame": frame})


def read_receipt(*, group_id: str, user_id: str, last_read_seq: int) -> None:
    """Tell a group's connections (the reader's own included) how far one member has read."""
    group_event(group_id, {"type": "read_receipt", "group_id": group_id, "user_id": user_id,
                           "last_read_seq": last_read_seq})
