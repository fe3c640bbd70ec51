"""GET /metrics: Prometheus text format for this process, for staff or a scraper bearing METRICS_TOKEN."""
import hmac

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken

from imserver.errors import error_body


def metrics_view(request):
    """Prometheus text format for this process: for staff, or a scraper bearing METRICS_TOKEN."""
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
    try:
        found = JWTAuthentication().authenticate(request)
    except (InvalidToken, AuthenticationFailed):
        return None
    return found[0] if found else None
