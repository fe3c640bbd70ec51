"""Per-user send rate over HTTP: DRF's throttling, with the rate read from the settings at each request."""
import logging

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.throttling import UserRateThrottle

from imserver.errors import RateLimited

logger = logging.getLogger(__name__)


class SendRateThrottle(UserRateThrottle):
    scope = "message_send"

    def get_rate(self):
        return settings.IM_SEND_RATE

    def allow_request(self, request, view):
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            allowed = super().allow_request(request, view)
        except RedisError as exc:  # the counters' Redis is down: that never refuses a send
            logger.warning("send rate not checked: %s", exc.__class__.__name__)
            return True
        if allowed:
            return True
        raise RateLimited(f"At most {self.rate} messages; slow down.", retry_after=self.wait())
