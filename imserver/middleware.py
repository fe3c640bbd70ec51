"""The contract's 503 for a database that is away, on the paths DRF's exception handler does not see."""
import logging

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import JsonResponse

from imserver.errors import ServiceUnavailable, error_body

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    """A view that fails because the database cannot be reached answers 503 SERVICE_UNAVAILABLE, not 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        # The same test as the DRF handler's: connection-level errors only, never a bad query.
        if isinstance(exception, (OperationalError, InterfaceError)) or type(exception) is DatabaseError:
            logger.warning("database unavailable: %s", exception.__class__.__name__)
            return JsonResponse(error_body(ServiceUnavailable.code, ServiceUnavailable.default_message), status=503)
        return None
