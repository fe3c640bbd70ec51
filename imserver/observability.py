"""Request ids that follow a message from HTTP or WebSocket into Celery, JSON logs, and Prometheus metrics."""
import contextvars
import hmac
import logging
import time
import uuid

from celery.signals import before_task_publish, task_postrun, task_prerun
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# --- metrics ---------------------------------------------------------------------------------------
HTTP_LATENCY = Histogram("im_http_request_duration_seconds", "HTTP request latency", ["route", "method", "status"])
MESSAGES_SENT = Counter("im_messages_sent_total", "Messages stored", ["transport", "msg_type"])
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


class _StateCollector:
    """Values read at scrape time: AI records in PROCESSING, the Celery queue's length."""

    def describe(self):  # lets the registry check names without touching the database at import
        yield GaugeMetricFamily("im_ai_records_processing", "AI interaction records in PROCESSING")
        yield GaugeMetricFamily("im_celery_queue_length", "Tasks waiting in the Celery queue")

    def collect(self):
        from ai_bridge.models import AIInteractionRecord, Status

        processing = GaugeMetricFamily("im_ai_records_processing", "AI interaction records in PROCESSING")
        try:
            processing.add_metric([], AIInteractionRecord.objects.filter(status=Status.PROCESSING).count())
        except Exception:  # noqa: BLE001 - a scrape never fails because a part is down
            processing.add_metric([], float("nan"))
        yield processing
        queue = GaugeMetricFamily("im_celery_queue_length", "Tasks waiting in the Celery queue")
        queue.add_metric([], _queue_length())
        yield queue


def _queue_length() -> float:
    if settings.CELERY_TASK_ALWAYS_EAGER or not settings.CELERY_BROKER_URL.startswith("redis"):
        return 0.0
    try:
        import redis

        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=settings.HEALTH_CHECK_TIMEOUT)
        return float(client.llen("celery"))
    except Exception:  # noqa: BLE001
        return float("nan")


REGISTRY.register(_StateCollector())


def metrics_view(request):
    """Prometheus text format for this process: for staff, or a scraper bearing METRICS_TOKEN."""
    from imserver.errors import error_body

    header = request.headers.get("Authorization", "")
    if not (settings.METRICS_TOKEN and hmac.compare_digest(header, f"Bearer {settings.METRICS_TOKEN}")):
        user = _caller(request)
        if user is None:
            return JsonResponse(error_body("NOT_AUTHENTICATED", "Metrics need staff credentials or the metrics token."),
                                status=401)
        if not user.is_staff:
            return JsonResponse(error_body("PERMISSION_DENIED", "Metrics are for staff only."), status=403)
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


def _caller(request):
    """The user the session or a valid access token names, else None."""
    if request.user.is_authenticated:
        return request.user
    from rest_framework_simplejwt.authentication import JWTAuthentication
    from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken

    try:
        found = JWTAuthentication().authenticate(request)
    except (InvalidToken, AuthenticationFailed):
        return None
    return found[0] if found else None


# --- request ids -----------------------------------------------------------------------------------

def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


class RequestIdMiddleware:
    """Takes X-Request-ID (or makes one), logs with it, answers with it, and times the request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if incoming.isascii() and 0 < len(incoming) <= 64 else new_request_id()
        request.request_id = request_id  # for the log lines Django writes after the middleware has returned
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        match = getattr(request, "resolver_match", None)
        route = (match.route or match.view_name) if match else "unmatched"
        HTTP_LATENCY.labels(route, request.method, str(response.status_code)).observe(time.perf_counter() - started)
        response["X-Request-ID"] = request_id
        return response


class RequestIdFilter(logging.Filter):
    """Puts `request_id` on each record: that of the request the record names, else the current one."""

    def filter(self, record):
        # Django logs a 4xx or 5xx response (django.request) after the middleware chain has returned and reset the
        # context, but it names the request in the record.
        record.request_id = getattr(getattr(record, "request", None), "request_id", None) or request_id_var.get()
        return True


@before_task_publish.connect(dispatch_uid="imserver.request_id_out")
def _request_id_out(headers=None, **kwargs):
    if headers is not None:
        headers["request_id"] = request_id_var.get()


_task_tokens = {}


@task_prerun.connect(dispatch_uid="imserver.request_id_in")
def _request_id_in(task_id=None, task=None, **kwargs):
    _task_tokens[task_id] = request_id_var.set(getattr(task.request, "request_id", None) or new_request_id())


@task_postrun.connect(dispatch_uid="imserver.request_id_done")
def _request_id_done(task_id=None, **kwargs):
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        request_id_var.reset(token)
