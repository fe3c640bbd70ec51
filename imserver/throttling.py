"""Rate limits shared by every process through the cache (Redis when there is one): sends and logins."""
import asyncio
import functools
import hashlib
import logging
import os
import threading
import time

import redis.asyncio
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.exceptions import NoScriptError, RedisError
from rest_framework.throttling import BaseThrottle

from imserver.cache import redis_connection_pool
from imserver.errors import RateLimited
from imserver.patches import redis_cache_client
from imserver.redisconn import KeptConnection

logger = logging.getLogger(__name__)

# A sliding log of event times (newest first), kept as a Redis list: expired times are dropped, the count is
# checked and the event recorded in one atomic step. Returns {1, count, 0} when recorded, and
# {0, count, oldest time} when refused.
_LOG_SCRIPT = """
local key, now, duration, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
while true do
  local oldest = redis.call('LINDEX', key, -1)
  if not oldest or tonumber(oldest) > now - duration then break end
  redis.call('RPOP', key)
end
local count = redis.call('LLEN', key)
if count >= limit then
  return {0, count, redis.call('LINDEX', key, -1) or ARGV[1]}
end
redis.call('LPUSH', key, ARGV[1])
redis.call('EXPIRE', key, ARGV[2])
return {1, count + 1, 0}
"""
_LOG_SCRIPT_SHA = hashlib.sha1(_LOG_SCRIPT.encode()).hexdigest()
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_local_lock = threading.Lock()


def parse_rate(rate: str) -> tuple[int, int]:
    """`"120/min"` → (120, 60), as DRF reads its rates."""
    count, period = rate.split("/")
    return int(count), _PERIODS[period[0]]


def rate_hit(key: str, rate: str) -> float | None:
    """Record one event under `key` if `rate` allows it: None, or the seconds to wait before the next one.

    Redis being away never refuses anything: the limit is a guard, not a part the service needs."""
    limit, duration = parse_rate(rate)
    cache = caches["default"]
    now = time.time()
    try:
        if isinstance(cache, RedisCache):
            full_key = _log_key(key)
            client = redis_cache_client(cache, full_key, write=True)
            args = (1, full_key, repr(now), duration, limit)
            try:
                allowed, _, oldest = client.evalsha(_LOG_SCRIPT_SHA, *args)
            except NoScriptError:
                allowed, _, oldest = client.eval(_LOG_SCRIPT, *args)
        else:
            with _local_lock:  # one process: the lock makes read-and-write atomic
                log = [t for t in cache.get(f"throttle_{key}_log", []) if t > now - duration]
                allowed = len(log) < limit
                if allowed:
                    log.insert(0, now)
                    cache.set(f"throttle_{key}_log", log, duration)
                oldest = log[-1] if log else now
    except RedisError as exc:
        logger.warning("rate not checked: %s", exc.__class__.__name__)
        return None
    return _wait(allowed, oldest, now, duration)


@functools.lru_cache(maxsize=4096)
def _log_key(key: str) -> str:
    """The cache's key for `key`'s log: under ASGI each request's context builds a cache object of its own to ask
    (2.5 % of a server's CPU at 600 sends/s)."""
    return caches["default"].make_and_validate_key(f"throttle_{key}_log")


@receiver(setting_changed)
def _log_keys_forget(setting, **kwargs):
    if setting == "CACHES":
        _log_key.cache_clear()


def _wait(allowed, oldest, now: float, duration: int) -> float | None:
    return None if allowed else max(0.0, float(oldest) + duration - now)


_async_clients: dict[tuple[int, asyncio.AbstractEventLoop], redis.asyncio.Redis] = {}


def _async_client() -> redis.asyncio.Redis:
    loop_key = (os.getpid(), asyncio.get_running_loop())
    client = _async_clients.get(loop_key)
    if client is None:
        client = _async_clients[loop_key] = redis.asyncio.Redis(connection_pool=redis_connection_pool(
            settings.REDIS_URL, asynchronous=True, socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT))
    return client


class _Scripts:
    """One event loop's rate scripts, on one Redis connection of their own, written and read in batches.

    Through redis-py's client a script cost 116-148 µs of the server's CPU on a slow machine (a connection checked
    out of the pool and back, its retry wrapper, each write under a deadline of its own run as a task), a tenth of
    the server's work on a send: here it is one write and one parsed reply on a connection kept for the purpose,
    68-106 µs, and the scripts that come while a batch is in flight leave together after it, as the channel layer's
    publishes do (imserver.channel_layer). Each caller gets its own reply, or error."""

    def __init__(self, pool):
        self.kept = KeptConnection(pool, "rate script")  # the pool's settings: made from them, not lent by it
        self.sending = False  # a batch is in flight: what comes meanwhile waits for the next one
        self.waiting: list[tuple[tuple, asyncio.Future]] = []

    async def evalsha(self, *args):
        if self.sending:
            done = asyncio.get_running_loop().create_future()
            self.waiting.append((args, done))
            return await done
        self.sending = True  # the common case, nothing in flight: sent from the caller's own task
        try:
            reply = (await self._exchange([("EVALSHA", _LOG_SCRIPT_SHA, *args)]))[0]
        finally:
            if self.waiting:
                asyncio.get_running_loop().create_task(self._send_waiting())
            else:
                self.sending = False
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def _send_waiting(self):
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                try:
                    replies = await self._exchange([("EVALSHA", _LOG_SCRIPT_SHA, *args) for args, _ in batch])
                except Exception as exc:  # noqa: BLE001 - every caller of the batch gets it
                    replies = [exc] * len(batch)
                for (_, done), reply in zip(batch, replies):
                    if not done.done():
                        (done.set_exception if isinstance(reply, Exception) else done.set_result)(reply)
        finally:
            self.sending = False
            for _, done in self.waiting:  # cancelled with the loop: nobody is left waiting
                done.cancel()
            self.waiting = []

    async def _exchange(self, commands: list[tuple]) -> list:
        return await self.kept.exchange(commands, settings.REDIS_SOCKET_TIMEOUT)


_scripts: dict[tuple[int, asyncio.AbstractEventLoop], _Scripts] = {}


def _loop_scripts() -> _Scripts:
    loop_key = (os.getpid(), asyncio.get_running_loop())
    scripts = _scripts.get(loop_key)
    if scripts is None:
        scripts = _scripts[loop_key] = _Scripts(_async_client().connection_pool)
    return scripts


async def rate_hit_async(key: str, rate: str, now: float | None = None) -> float | None:
    """rate_hit from the server's event loop, on the same counters (the Redis cache only: imserver.asyncdb); `now`
    is the time the event is recorded under (rate_unhit_async)."""
    limit, duration = parse_rate(rate)
    full_key = _log_key(key)
    now = time.time() if now is None else now
    args = (1, full_key, repr(now), duration, limit)
    try:
        try:
            allowed, _, oldest = await _loop_scripts().evalsha(*args)
        except NoScriptError:
            allowed, _, oldest = await _async_client().eval(_LOG_SCRIPT, *args)
    except RedisError as exc:
        logger.warning("rate not checked: %s", exc.__class__.__name__)
        return None
    return _wait(allowed, oldest, now, duration)


async def rate_unhit_async(key: str, at: float) -> None:
    """Take back the event rate_hit_async recorded at `at`: it did not happen after all."""
    full_key = _log_key(key)
    try:
        await _async_client().lrem(full_key, 1, repr(at))
    except RedisError as exc:
        logger.warning("rate not taken back: %s", exc.__class__.__name__)


def _send_refusal(wait: float | None) -> None:
    if wait is not None:
        raise RateLimited(f"At most {settings.IM_SEND_RATE} messages; slow down.", retry_after=wait,
                          details={"retry_after": round(wait, 1)})


def send_rate_check(user) -> None:
    """One send rate per user, whatever the transport (IM_SEND_RATE)."""
    _send_refusal(rate_hit(f"message_send_{user.pk}", settings.IM_SEND_RATE))


async def send_rate_check_async(user) -> float:
    """send_rate_check from the server's event loop; the time the send was counted at (send_rate_return_async)."""
    now = time.time()
    _send_refusal(await rate_hit_async(f"message_send_{user.pk}", settings.IM_SEND_RATE, now))
    return now


async def send_rate_return_async(user, counted_at: float) -> None:
    """Take back a send counted by send_rate_check_async that was not stored: the path that stores it counts it."""
    await rate_unhit_async(f"message_send_{user.pk}", counted_at)


class LoginRateThrottle(BaseThrottle):
    """Password logins per username (IM_LOGIN_RATE_PER_USERNAME) and per client address
    (IM_LOGIN_RATE_PER_ADDRESS): guessing one account's password, or many accounts' from one place, is slowed."""

    def allow_request(self, request, view):
        username = request.data.get("username") if hasattr(request.data, "get") else None
        checks = [(f"login_addr_{self.get_ident(request)}", settings.IM_LOGIN_RATE_PER_ADDRESS)]
        if isinstance(username, str) and username:
            digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
            checks.append((f"login_user_{digest}", settings.IM_LOGIN_RATE_PER_USERNAME))
        for key, rate in checks:
            wait = rate_hit(key, rate)
            if wait is not None:
                raise RateLimited("Too many login attempts; try again later.", retry_after=wait,
                                  details={"retry_after": round(wait, 1)})
        return True
