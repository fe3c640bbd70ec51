"""Request ids that follow a request from HTTP or WebSocket into Celery and the logs.

The Celery side (headers out, context in) is connected in imserver/celery.py.
"""
import contextvars
import logging
import time
import uuid

from imserver.metrics import HTTP_LATENCY

REQUEST_ID_MAX = 64  # longer ones are not echoed into the logs
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def request_id_from(incoming: str) -> str:
    """The client's X-Request-ID when it is a sane one (ASCII, at most REQUEST_ID_MAX characters), else a new id."""
    return incoming if incoming.isascii() and 0 < len(incoming) <= REQUEST_ID_MAX else new_request_id()


class RequestIdMiddleware:
    """Takes X-Request-ID (or makes one), logs with it, answers with it, and times the request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_from(request.headers.get("X-Request-ID", ""))
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
