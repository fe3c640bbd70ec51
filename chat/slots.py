"""The connection cap: WebSocket connections per user, counted across every server process.

With Redis, each user's connections are a sorted set of channel names scored by when their slot lapses.
A slot is taken atomically before the handshake is accepted (so concurrent handshakes cannot all get in),
renewed while the connection lives and given back on every exit path; the slots of a process that died
lapse after WS_CONNECTION_SLOT_TTL. Without Redis there is one process, and a set per user is enough."""
import asyncio
import logging
import weakref

from django.conf import settings
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from imserver.cache import redis_connection_pool

logger = logging.getLogger(__name__)

# KEYS[1] the user's set; ARGV: channel name, cap, ttl. Redis's own clock, so servers' clocks may differ.
_TAKE = """
local key, member, cap, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZCARD', key) >= cap then return 0 end
redis.call('ZADD', key, now + ttl, member)
redis.call('EXPIRE', key, ttl)
return 1
"""
# KEYS[1] the user's set; ARGV: ttl, then the channel names this process still holds in it.
_RENEW = """
local t = redis.call('TIME')
local lapse = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', lapse, ARGV[i]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
"""


class _RedisSlots:
    """The slots of one event loop's connections (one per server process; tests run several loops)."""

    def __init__(self):
        # Through Sentinel too, when there is one (the pool finds the master again after a failover).
        self.client = aioredis.Redis(connection_pool=redis_connection_pool(
            settings.REDIS_URL, asynchronous=True, socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT))
        self.take_script = self.client.register_script(_TAKE)
        self.renew_script = self.client.register_script(_RENEW)
        self.held: dict[str, set[str]] = {}  # key -> channel names
        self.renewer: asyncio.Task | None = None

    async def take(self, key: str, member: str) -> bool:
        ttl = settings.WS_CONNECTION_SLOT_TTL
        taken = await self.take_script(keys=[key], args=[member, settings.WS_MAX_CONNECTIONS_PER_USER, ttl])
        if taken:
            self.held.setdefault(key, set()).add(member)
            if self.renewer is None:
                self.renewer = asyncio.create_task(self._renew_forever())
        return bool(taken)

    async def give_back(self, key: str, member: str) -> None:
        members = self.held.get(key, set())
        members.discard(member)
        if not members:
            self.held.pop(key, None)
        if not self.held and self.renewer is not None:
            self.renewer.cancel()
            self.renewer = None
        await self.client.zrem(key, member)

    async def _renew_forever(self):
        ttl = settings.WS_CONNECTION_SLOT_TTL
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for key, members in list(self.held.items()):
                        await self.renew_script(keys=[key], args=[ttl, *members], client=pipe)
                    await pipe.execute()
            except RedisError as exc:  # the next round tries again; a slot lapses only after a whole ttl
                logger.warning("connection slots not renewed: %s", exc.__class__.__name__)


class _LocalSlots:
    """One process without Redis: a set of channel names per user."""

    held: dict[str, set[str]] = {}

    async def take(self, key: str, member: str) -> bool:
        members = self.held.setdefault(key, set())
        if len(members) >= settings.WS_MAX_CONNECTIONS_PER_USER:
            return False
        members.add(member)
        return True

    async def give_back(self, key: str, member: str) -> None:
        members = self.held.get(key, set())
        members.discard(member)
        if not members:
            self.held.pop(key, None)


_per_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _RedisSlots]" = weakref.WeakKeyDictionary()
_local = _LocalSlots()


def _slots():
    if not settings.REDIS_URL:
        return _local
    loop = asyncio.get_running_loop()
    if loop not in _per_loop:
        _per_loop[loop] = _RedisSlots()
    return _per_loop[loop]


def _key(user_id: str) -> str:
    return f"{settings.CHANNEL_LAYER_PREFIX}:wsconn:{user_id}"


async def slot_take(*, user_id: str, channel_name: str) -> bool:
    """Take one of the user's WS_MAX_CONNECTIONS_PER_USER slots for this connection; False when all are taken.

    Redis being away does not refuse connections: the cap guards the service, it is not a part it needs."""
    try:
        return await _slots().take(_key(user_id), channel_name)
    except RedisError as exc:
        logger.warning("connection cap not checked: %s", exc.__class__.__name__)
        return True


async def slot_give_back(*, user_id: str, channel_name: str) -> None:
    """Give the connection's slot back (a slot Redis could not be told of lapses by itself)."""
    try:
        await _slots().give_back(_key(user_id), channel_name)
    except RedisError as exc:
        logger.warning("connection slot not given back: %s", exc.__class__.__name__)
