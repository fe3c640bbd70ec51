"""Shared OpenAPI pieces: the contract's error body."""
from drf_spectacular.utils import OpenApiResponse, inline_serializer
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

_ERROR = OpenApiResponse(ErrorSerializer, description="Error in the contract's format")
ERRORS = {code: _ERROR for code in (400, 401, 403, 404, 409, 413, 429, 503)}
# A call that reads a body also refuses one it cannot parse: a missing or unknown Content-Type.
BODY_ERRORS = {**ERRORS, 415: _ERROR}


def contract_paths(result, generator, request, public):
    """Show the paths as the contract writes them: no trailing slash (both forms are served)."""
    result["paths"] = {
        (path.rstrip("/") if path != "/api/group/" else path): item for path, item in result["paths"].items()
    }
    return result
