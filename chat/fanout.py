"""Group pushes handed to a process's connections in one pass: one channel-layer member per group per process.

channels gives every connection its own channel, joined to each group it follows: a group's push became one queue
item per connection, and each connection took its items one per turn of its dispatch loop, in turns shared with
its own frames (a send's database round trip held the next push back). A connection that sent as fast as it
could fell seconds behind its group's pushes. Here the process follows each group once, with a channel of its
own, and hands each push to the group's local connections one after the other, without a task or a loop turn
per connection. A connection's own channel still carries what is for the user alone (membership, revocation,
drafts)."""
import asyncio
import contextlib
import logging
import weakref

from django.conf import settings

from imserver.publish import group_channel

logger = logging.getLogger(__name__)


class GroupFanout:
    """One event loop's following of its connections' groups, through one channel-layer layer."""

    def __init__(self, layer):
        self.layer = layer
        self.followers: dict[str, set] = {}  # group_id -> the consumers following it
        self.subscribed: set[str] = set()  # group_ids this process's channel is a member of
        self.changing = asyncio.Lock()  # subscribes and unsubscribes, one at a time
        self.channel: str | None = None
        self.receiver: asyncio.Task | None = None

    async def follow(self, group_id: str, consumer) -> None:
        """From its return on, every event sent to the group is handed to `consumer.fanout_event`."""
        while group_id not in self.subscribed:
            async with self.changing:
                if group_id not in self.subscribed:
                    if self.channel is None:
                        self.channel = await self.layer.new_channel(prefix="fanout.")
                        self.receiver = asyncio.get_running_loop().create_task(self._receive(self.channel))
                    await self.layer.group_add(group_channel(group_id), self.channel)
                    self.subscribed.add(group_id)
        self.followers.setdefault(group_id, set()).add(consumer)

    async def unfollow(self, group_id: str, consumer) -> None:
        """`consumer` is handed nothing more of the group; the last one to go takes the process's membership."""
        followers = self.followers.get(group_id)
        if followers is not None:
            followers.discard(consumer)
        if followers:
            return
        async with self.changing:
            if self.followers.get(group_id) or group_id not in self.subscribed:
                return  # followed again meanwhile, or already let go
            self.followers.pop(group_id, None)
            self.subscribed.discard(group_id)
            try:
                await self.layer.group_discard(group_channel(group_id), self.channel)
            except Exception:  # noqa: BLE001 - nobody here follows it: what still comes of it is dropped
                logger.warning("group %s not let go in the channel layer", group_id, exc_info=True)
            if not self.subscribed:  # nobody left on this loop: no task outlives its connections
                receiver, self.receiver, self.channel = self.receiver, None, None
                receiver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receiver

    async def _receive(self, channel: str):
        """Hand over what comes, for as long as the loop has followers; a failing receive is retried, since every
        connection of the process depends on this one task."""
        while True:
            try:
                event = await self.layer.receive(channel)
            except Exception:  # noqa: BLE001 - e.g. Redis away for the core layer: its connections catch up
                logger.exception("group pushes not received; retrying in %s s", settings.WS_FANOUT_RECEIVE_RETRY)
                await asyncio.sleep(settings.WS_FANOUT_RECEIVE_RETRY)
                continue
            await self.hand_over(event)

    async def hand_over(self, event: dict) -> None:
        """Give an event of a group to each of its local followers in turn; one follower's failure is its own."""
        for consumer in list(self.followers.get(event.get("group_id"), ())):
            try:
                await consumer.fanout_event(event)
            except Exception:  # noqa: BLE001 - the others still get it
                logger.exception("push %s not handed to a connection", event.get("type"))


_per_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GroupFanout]" = weakref.WeakKeyDictionary()


def fanout_for(layer) -> GroupFanout:
    """The running loop's fan-out through `layer` (a new one when the layer was replaced, as tests do)."""
    loop = asyncio.get_running_loop()
    fanout = _per_loop.get(loop)
    if fanout is None or fanout.layer is not layer:
        fanout = _per_loop[loop] = GroupFanout(layer)
    return fanout
