"""The contract's error body, `{"error": {"code", "message", "details"}}`, for every failure."""
import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """A refusal by a service, carried to the edge as the contract's error body."""

    code = "VALIDATION_ERROR"
    status_code = status.HTTP_400_BAD_REQUEST
    default_message = "The request is not valid."

    def __init__(self, message: str | None = None, *, details: dict | None = None):
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)


class ValidationFailed(ServiceError):
    pass


class NotAuthenticated(ServiceError):
    code = "NOT_AUTHENTICATED"
    status_code = status.HTTP_401_UNAUTHORIZED
    default_message = "Authentication credentials were not provided or are not valid."


class NotGroupMember(ServiceError):
    code = "NOT_GROUP_MEMBER"
    status_code = status.HTTP_403_FORBIDDEN
    default_message = "You are not a member of this group."


class PermissionDeniedError(ServiceError):
    code = "PERMISSION_DENIED"
    status_code = status.HTTP_403_FORBIDDEN
    default_message = "You do not have permission to perform this action."


class NotFound(ServiceError):
    code = "NOT_FOUND"
    status_code = status.HTTP_404_NOT_FOUND
    default_message = "Not found."


class AlreadyMember(ServiceError):
    code = "ALREADY_MEMBER"
    status_code = status.HTTP_409_CONFLICT
    default_message = "The user is already a member of this group."


class Conflict(ServiceError):
    code = "CONFLICT"
    status_code = status.HTTP_409_CONFLICT
    default_message = "The request conflicts with stored data."


class PayloadTooLarge(ServiceError):
    code = "PAYLOAD_TOO_LARGE"
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_message = "The payload is too large."


class RateLimited(ServiceError):
    code = "RATE_LIMITED"
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_message = "Too many requests."

    def __init__(self, message: str | None = None, *, retry_after: float | None = None, details=None):
        super().__init__(message, details=details)
        self.retry_after = retry_after


class AIServiceUnavailable(ServiceError):
    code = "AI_SERVICE_UNAVAILABLE"
    status_code = status.HTTP_502_BAD_GATEWAY
    default_message = "The AI service could not be reached."


class ServiceUnavailable(ServiceError):
    code = "SERVICE_UNAVAILABLE"
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_message = "A part of the service is unavailable; try again shortly."


class InternalError(ServiceError):
    code = "INTERNAL_ERROR"
    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    default_message = "An internal error occurred."


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _first_message(detail) -> str:
    """A readable one-line message from DRF's nested error detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            inner = _first_message(value)
            return inner if key == "non_field_errors" else f"{key}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def _token_error(detail: dict) -> tuple[str, dict]:
    """simplejwt's `{"detail", "code", "messages"?}`: its most specific text, and its code as `token_code`."""
    messages = detail.get("messages") or [{}]
    text = (messages[0].get("message") if isinstance(messages[0], dict) else None) or detail.get("detail")
    details = {"token_code": str(detail["code"])} if "code" in detail else {}
    return str(text) if text else _first_message(detail), details


_DRF_CODES = [
    (exceptions.NotAuthenticated, "NOT_AUTHENTICATED", 401),
    (exceptions.AuthenticationFailed, "NOT_AUTHENTICATED", 401),
    (exceptions.PermissionDenied, "PERMISSION_DENIED", 403),
    (exceptions.NotFound, "NOT_FOUND", 404),
    (exceptions.MethodNotAllowed, "METHOD_NOT_ALLOWED", 405),
    (exceptions.NotAcceptable, "NOT_ACCEPTABLE", 406),
    (exceptions.UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", 415),
    (exceptions.Throttled, "RATE_LIMITED", 429),
    (exceptions.ParseError, "VALIDATION_ERROR", 400),
    (exceptions.ValidationError, "VALIDATION_ERROR", 400),
]


def exception_handler(exc, context):
    """DRF exception handler answering every error in the contract's format."""
    headers = {}
    if isinstance(exc, ServiceError):
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code, headers=headers)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return Response(error_body("PAYLOAD_TOO_LARGE", "The request body is too large."), status=413)
    if isinstance(exc, exceptions.APIException):
        for cls, code, http_status in _DRF_CODES:
            if isinstance(exc, cls):
                break
        else:
            code, http_status = "ERROR", exc.status_code
        if isinstance(exc, (exceptions.ValidationError, exceptions.ParseError)):
            detail = exc.detail if isinstance(exc.detail, (dict, list)) else [exc.detail]  # ParseError: one string
            details = detail if isinstance(detail, dict) else {"non_field_errors": detail}
            message = _first_message(exc.detail)
        elif isinstance(exc.detail, dict):
            message, details = _token_error(exc.detail)
        else:
            details, message = {}, str(exc.detail)
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(max(1, round(exc.wait)))
        return Response(error_body(code, message, details), status=http_status, headers=headers)
    if database_unavailable(exc):
        logger.warning("database unavailable: %s", exc.__class__.__name__)
        return Response(error_body("SERVICE_UNAVAILABLE", ServiceUnavailable.default_message), status=503)
    logger.exception("unhandled error", exc_info=exc)
    return Response(error_body("INTERNAL_ERROR", "An internal error occurred."), status=500)


def database_unavailable(exc: BaseException) -> bool:
    """Whether an error means the database cannot be reached now (the client retries: 503, or a frame's
    SERVICE_UNAVAILABLE): connection-level errors only; a bad query, a constraint or a bug is not one."""
    return isinstance(exc, (OperationalError, InterfaceError)) or type(exc) is DatabaseError


def json_not_found(request, exception=None):
    return JsonResponse(error_body("NOT_FOUND", "No such path."), status=404)


def json_server_error(request):
    return JsonResponse(error_body("INTERNAL_ERROR", "An internal error occurred."), status=500)


def json_bad_request(request, exception=None):
    return JsonResponse(error_body("VALIDATION_ERROR", "Bad request."), status=400)


def json_permission_denied(request, exception=None):
    return JsonResponse(error_body("PERMISSION_DENIED", "Permission denied."), status=403)
