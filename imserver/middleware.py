"""The contract's error bodies on the paths DRF's exception handler does not see, and the web page's CSP."""
import json
import logging

from csp.middleware import CSPMiddleware
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import JsonResponse
from rest_framework.response import Response as DRFResponse

from imserver.errors import ServiceUnavailable, database_unavailable, error_body

logger = logging.getLogger(__name__)
security_logger = logging.getLogger("django.security.DisallowedHost")

# What Django answers itself, as HTML (DEBUG's pages, with tracebacks and settings) or plain text.
_DJANGO_ERRORS = {
    400: ("VALIDATION_ERROR", "Bad request."),
    404: ("NOT_FOUND", "No such path."),
    500: ("INTERNAL_ERROR", "An internal error occurred."),
}


class ContractErrorsMiddleware:
    """A foreign Host is a 400 everywhere; on API paths Django's own error pages become the contract's body."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            request.get_host()
        except DisallowedHost as exc:
            # Checked before any other middleware asks, so DEBUG's page listing the settings never answers it.
            security_logger.error(str(exc), extra={"status_code": 400, "request": request})
            return JsonResponse(error_body("VALIDATION_ERROR", "The Host header names no host served here."),
                                status=400)
        response = self.get_response(request)
        if (request.path_info.startswith("/api/") and response.status_code in _DJANGO_ERRORS
                and not isinstance(response, DRFResponse) and not response.streaming
                and not response.get("Content-Type", "").startswith("application/json")):
            # The body is replaced, not the response: the headers other middleware set (CORS, ...) stay.
            response.content = json.dumps(error_body(*_DJANGO_ERRORS[response.status_code])).encode()
            response["Content-Type"] = "application/json"
            if response.has_header("Content-Length"):
                response["Content-Length"] = str(len(response.content))
        return response


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's policy, with ws:// and wss:// of the requested host in connect-src."""

    def process_response(self, request, response):
        # django-csp builds the policy before it looks at the excluded prefixes: API calls skip that (~40 µs).
        if request.path_info.startswith(tuple(settings.CONTENT_SECURITY_POLICY.get("EXCLUDE_URL_PREFIXES", ()))):
            return response
        return super().process_response(request, response)

    def get_policy_parts(self, request, response, report_only=False):
        parts = super().get_policy_parts(request, response, report_only)
        # 'self' covers the page's own WebSocket only in browsers of CSP Level 3. The host is a valid one:
        # ContractErrorsMiddleware answered any other.
        host = request.get_host()
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", []), f"ws://{host}", f"wss://{host}"]
        parts.update = update
        return parts


class DatabaseUnavailableMiddleware:
    """A view that fails because the database cannot be reached answers 503 SERVICE_UNAVAILABLE, not 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if database_unavailable(exception):
            logger.warning("database unavailable: %s", exception.__class__.__name__)
            return JsonResponse(error_body(ServiceUnavailable.code, ServiceUnavailable.default_message), status=503)
        return None
