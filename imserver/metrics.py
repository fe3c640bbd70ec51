"""The Prometheus metrics of this process, and the scrape-time gauge of what imserver itself knows.

Apps that add values read at scrape time register their own gauges from their `ready()` (ai_bridge/metrics.py).
"""
from django.conf import settings
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

HTTP_LATENCY = Histogram("im_http_request_duration_seconds", "HTTP request latency", ["route", "method", "status"])
MESSAGES_SENT = Counter("im_messages_sent_total", "Messages stored", ["transport", "msg_type"])
SEND_PATHS = Counter("im_message_send_path_total", "Messages stored, by path: on the event loop (direct) or "
                     "through the ORM (orm)", ["path"])
WS_OPEN = Gauge("im_websocket_connections_open", "WebSocket connections open in this process")
PUSH_LATENCY = Histogram("im_push_fanout_seconds", "From the commit of a message to its frame leaving this process",
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
AI_OUTCOMES = Counter("im_ai_outcomes_total", "AI records by how they ended besides a plain reply: escalated, "
                      "suppressed, coalesced, approved, approved_edited, rejected", ["outcome"])
AI_FIRST_DELTA = Histogram("im_ai_first_delta_seconds", "From the start of an AI attempt to its first streamed text",
                           ["protocol"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
AI_REPLY_STORED = Histogram("im_ai_reply_seconds", "From the start of an AI attempt to its reply stored",
                            ["protocol"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
AI_CALLS = Histogram("im_ai_call_duration_seconds", "Calls to the AI service by outcome", ["outcome"],
                     buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))


class ScrapeGauge:
    """A gauge read when Prometheus scrapes, from `read()`; NaN when what it reads is down (a scrape never fails)."""

    def __init__(self, name: str, documentation: str, read):
        self.name, self.documentation, self.read = name, documentation, read

    def describe(self):  # lets the registry check the name without reading anything at registration
        yield GaugeMetricFamily(self.name, self.documentation)

    def collect(self):
        gauge = GaugeMetricFamily(self.name, self.documentation)
        try:
            gauge.add_metric([], float(self.read()))
        except Exception:  # noqa: BLE001 - a scrape never fails because a part is down
            gauge.add_metric([], float("nan"))
        yield gauge


_registered: set[str] = set()


def scrape_gauge_register(name: str, documentation: str, read) -> None:
    """Register a scrape-time gauge once per process, however often the registering app is made ready."""
    if name not in _registered:
        REGISTRY.register(ScrapeGauge(name, documentation, read))
        _registered.add(name)


def _queue_length() -> float:
    if settings.AI_TASKS_IN_PROCESS or not settings.CELERY_BROKER_URL.startswith("redis"):
        return 0.0
    import redis  # only with a Redis broker

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=settings.HEALTH_CHECK_TIMEOUT)
    return float(client.llen("celery"))


scrape_gauge_register("im_celery_queue_length", "Tasks waiting in the Celery queue", _queue_length)
