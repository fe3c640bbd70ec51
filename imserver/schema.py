"""Shared OpenAPI pieces: the contract's error body, each operation's error answers, body examples."""
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorDetail",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "details": serializers.DictField(),
            },
        )
    },
)

# What each status means in this API (API.md, "Errors").
_MEANING = {
    400: "VALIDATION_ERROR: a field or parameter is missing or malformed",
    401: "NOT_AUTHENTICATED: no credentials, or an invalid or expired token",
    403: "PERMISSION_DENIED, or NOT_GROUP_MEMBER for a group the caller is not in",
    404: "NOT_FOUND",
    409: "CONFLICT, or ALREADY_MEMBER",
    413: "PAYLOAD_TOO_LARGE: the body (IM_MAX_REQUEST_BYTES) or the content (IM_MAX_MESSAGE_CHARS) is too long",
    415: "VALIDATION_ERROR: the body is not JSON (a missing or unknown Content-Type)",
    429: "RATE_LIMITED: wait for the Retry-After header's seconds",
    502: "AI_SERVICE_UNAVAILABLE: the AI service could not be reached",
    503: "SERVICE_UNAVAILABLE: the database is away for a moment; retry",
}


def errors(*codes: int, body: bool = False, anonymous: bool = False) -> dict:
    """The error answers one operation can give: `codes`, 401 unless anonymous callers are served, 503 always
    (the database away), and 400, 413 and 415 when it reads a body."""
    found = {*codes, 503}
    if not anonymous:
        found.add(401)
    if body:
        found |= {400, 413, 415}
    return {code: OpenApiResponse(ErrorSerializer, description=_MEANING[code]) for code in sorted(found)}


# Ids as the server makes them, for the examples.
EXAMPLE_GROUP_ID = "group_01kb6z3m4n5p6q7r8s9t0v1w2x"
EXAMPLE_USER_ID = "user_01kb6z2a3b4c5d6e7f8g9h0j1k"


def example(name: str, value: dict, summary: str = "") -> OpenApiExample:
    """A request body's example."""
    return OpenApiExample(name, value=value, summary=summary or name, request_only=True)


def contract_paths(result, generator, request, public):
    """Show the paths as the contract writes them: no trailing slash (both forms are served)."""
    result["paths"] = {
        (path.rstrip("/") if path != "/api/group/" else path): item for path, item in result["paths"].items()
    }
    return result
