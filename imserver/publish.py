"""Channel-layer names and publishing, below every app: the pushes that need no app's models (membership, read
receipts, typing and AI status, closing a user's connections) are here; chat.realtime adds the message pushes."""
import asyncio
import concurrent.futures
import functools
import json
import logging
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)
_own_loop_wanted = False
_server_loop: asyncio.AbstractEventLoop | None = None  # the ASGI server's event loop, once it has served
_publisher: tuple[int, asyncio.AbstractEventLoop] | None = None  # (pid, loop): a forked child starts its own
_publisher_lock = threading.Lock()
_publishing: set[asyncio.Task] = set()  # the pushes the server's loop is sending now
_handed: set[concurrent.futures.Future] = set()  # the pushes handed to the process's own loop, not yet sent


def publish_from_own_loop() -> None:
    """Publish through one event loop that lives as long as the process (for Celery workers), handing each push
    to it without waiting, as a server's threads do: a task goes on (to the AI call, to the next piece of a
    stream) while Redis takes the push. Pushes of one thread keep their order, as on a server.

    Outside a server there is no event loop for async_to_sync to return to, so each push would run in a loop of
    its own, and the Redis channel layer would open (and drop) its connections for every one of them."""
    global _own_loop_wanted
    _own_loop_wanted = True


def pushes_drain(timeout: float) -> int:
    """Wait up to `timeout` seconds for the pushes handed to the process's own loop (a worker about to exit);
    how many were still unsent then."""
    pending = list(_handed)
    return len(concurrent.futures.wait(pending, timeout=timeout).not_done) if pending else 0


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


def frame_text(frame: dict) -> str:
    """A frame as the JSON text sent on the WebSocket."""
    return json.dumps(frame, separators=(",", ":"))


def publish(channel_group: str, event: dict) -> None:
    """Send an event to a channel-layer group: handed to the server's loop from its threads without waiting, or
    sent and waited for elsewhere; a failure is logged, never raised (a push never undoes a write; clients sync)."""
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _server_loop
    if loop is not None and _on(loop):  # the loop's own code (a send stored on it): no hand-off to itself
        task = loop.create_task(layer.group_send(channel_group, event))
        _publishing.add(task)  # the loop keeps only a weak reference to its tasks
        task.add_done_callback(_publishing.discard)
        task.add_done_callback(functools.partial(_publish_done, channel_group))
        return
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
            future = asyncio.run_coroutine_threadsafe(layer.group_send(channel_group, event), _publisher_loop())
            _handed.add(future)
            future.add_done_callback(_handed.discard)
            future.add_done_callback(functools.partial(_publish_done, channel_group))
        else:
            async_to_sync(layer.group_send)(channel_group, event)
    except Exception:  # noqa: BLE001 - a push failure never undoes a stored message; clients sync.
        logger.warning("push to %s failed", channel_group, exc_info=True)


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:  # a thread's
        return False


def _publish_done(channel_group: str, future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("push to %s failed", channel_group, exc_info=future.exception())


def member_joined(*, member) -> None:
    """Tell the new member's own connections to follow the group, and the group who came."""
    frame = {"type": "member_joined", "group_id": member.group.group_id, "user_id": member.user.user_id,
             "user_role": member.user_role}
    # The group's last_seq as the caller saw it before the join: the member's connections subscribe only
    # when they handle this event, so they fetch what was pushed after it in between.
    publish(user_channel(member.user.user_id), {"type": "membership.changed", "frame": frame,
                                                  "last_seq": member.group.last_seq})
    group_event(member.group.group_id, frame)


def connections_close(user_id: str, *, code: int) -> None:
    """Close every connection of the user, on every server process, with `code` (4403: deactivated)."""
    publish(user_channel(user_id), {"type": "connection.revoke", "code": code})


def member_left(*, group_id: str, user_id: str, user_role: str) -> None:
    """A membership is gone (removed, or deleted with its user or group): its connections leave at once."""
    frame = {"type": "member_left", "group_id": group_id, "user_id": user_id, "user_role": user_role}
    group_event(group_id, frame)
    publish(user_channel(user_id), {"type": "membership.changed", "frame": frame})


def group_event(group_id: str, frame: dict) -> None:
    """Push any frame (typing, ai_status) to a group's connections."""
    publish(group_channel(group_id), group_event_message(group_id, frame))


def group_event_message(group_id: str, frame: dict) -> dict:
    """The channel-layer event of a group's frame; every event sent to a group names it (chat.fanout)."""
    return {"type": "group.event", "group_id": group_id, "frame": frame}


def read_receipt(*, group_id: str, user_id: str, last_read_seq: int) -> None:
    """Tell a group's connections (the reader's own included) how far one member has read."""
    group_event(group_id, {"type": "read_receipt", "group_id": group_id, "user_id": user_id,
                           "last_read_seq": last_read_seq})
