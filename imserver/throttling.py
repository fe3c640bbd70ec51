"""Per-user send rate over HTTP: DRF's throttling, with the rate read from the settings at each request."""
import hashlib
import logging

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import NoScriptError, RedisError
from rest_framework.throttling import UserRateThrottle

from imserver.errors import RateLimited

logger = logging.getLogger(__name__)

# DRF's sliding log of send times (newest first), kept as a Redis list: expired times are dropped, the count
# is checked and the send recorded in one atomic step. Returns {1, count, 0} when recorded, and
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


class SendRateThrottle(UserRateThrottle):
    scope = "message_send"

    def get_rate(self):
        return settings.IM_SEND_RATE

    def allow_request(self, request, view):
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        cache = caches["default"]
        try:
            if isinstance(cache, RedisCache):
                allowed = self._allow_by_script(cache, request, view)
            else:
                allowed = super().allow_request(request, view)
        except RedisError as exc:  # the counters' Redis is down: that never refuses a send
            logger.warning("send rate not checked: %s", exc.__class__.__name__)
            return True
        if allowed:
            return True
        raise RateLimited(f"At most {self.rate} messages; slow down.", retry_after=self.wait())

    def _allow_by_script(self, cache: RedisCache, request, view) -> bool:
        """DRF's check and record, in one round trip to Redis instead of a read and a write (and no lost
        update between two sends of the same user)."""
        self.key = self.get_cache_key(request, view)
        self.now = self.timer()
        key = cache.make_and_validate_key(f"{self.key}_log")
        client = cache._cache.get_client(key, write=True)
        args = (1, key, repr(self.now), self.duration, self.num_requests)
        try:
            allowed, count, oldest = client.evalsha(_LOG_SCRIPT_SHA, *args)
        except NoScriptError:
            allowed, count, oldest = client.eval(_LOG_SCRIPT, *args)
        if allowed:
            return True
        self.history = [float(oldest)] * count  # what DRF's wait() reads: the log's length and its oldest time
        return False
