from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import viewsets
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.views import APIView

from groups.permissions import group_by_public_id, require_doctor
from imserver.pagination import paginator_for
from imserver.patches import django_request
from imserver.schema import errors
from records.exports import CONTENT_TYPES, FORMATS, group_export
from records.models import AuditEvent
from records.serializers import AuditEventSerializer, AuditFilter, ExportParams
from users.permissions import IsStaff


class FormatIsNotARenderer(BaseContentNegotiation):
    """Here `?format=` names the export's format, not one of DRF's renderers: answer (errors too) in JSON."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


async def _pulled(chunks):
    """The chunks one at a time, each made in the request's own thread (where its database cursor lives): Django's
    ASGI handler would read a sync iterator whole before sending a byte (StreamingHttpResponse.__aiter__)."""
    pull = sync_to_async(next, thread_sensitive=True)
    try:
        while (chunk := await pull(chunks, None)) is not None:
            yield chunk
    finally:
        await sync_to_async(chunks.close, thread_sensitive=True)()


@extend_schema(tags=["records"])
class GroupExportView(APIView):
    content_negotiation_class = FormatIsNotARenderer

    @extend_schema(operation_id="group_export",
                   parameters=[OpenApiParameter("format", str, enum=list(FORMATS), default="json")],
                   responses={(200, "application/json"): OpenApiTypes.OBJECT,
                              (200, "application/fhir+json"): OpenApiTypes.OBJECT, **errors(400, 403, 404)})
    def get(self, request, group_id):
        """A group's whole record, streamed: JSON `{group, members, messages, ai_records}` or a FHIR R4 Bundle
        (in-group DOCTORs, staff)."""
        params = ExportParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        fmt = params.validated_data["format"]
        group = group_by_public_id(group_id)
        require_doctor(request.user, group)
        chunks = group_export(group=group, fmt=fmt, with_ai_bodies=request.user.is_staff)
        streamed = _pulled(chunks) if isinstance(django_request(request), ASGIRequest) else chunks
        response = StreamingHttpResponse(streamed, content_type=CONTENT_TYPES[fmt])
        response["Content-Disposition"] = f'attachment; filename="{group.group_id}.{fmt}.json"'
        return response


@extend_schema(tags=["records"])
class AuditEventViewSet(viewsets.GenericViewSet):
    permission_classes = [IsStaff]
    serializer_class = AuditEventSerializer
    pagination_class = paginator_for("events")

    def get_queryset(self):
        return AuditEvent.objects.all()

    @extend_schema(operation_id="audit_list",
                   parameters=[OpenApiParameter("actor", str), OpenApiParameter("action", str),
                               OpenApiParameter("target", str)],
                   responses={200: AuditEventSerializer(many=True), **errors(400, 403)})
    def list(self, request):
        """Audit events, newest first (staff); filtered by actor (a user_id), action and target."""
        params = AuditFilter(data=request.query_params)
        params.is_valid(raise_exception=True)
        events = AuditEvent.objects.all()
        filters = {"actor_id" if key == "actor" else key: value
                   for key, value in params.validated_data.items() if value}
        page = self.paginate_queryset(events.filter(**filters).order_by("-id"))
        return self.get_paginated_response(AuditEventSerializer(page, many=True).data)
