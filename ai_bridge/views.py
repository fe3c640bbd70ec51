from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from ai_bridge.models import AIInteractionRecord
from ai_bridge.serializers import (
    ProbeResultSerializer,
    ProbeSerializer,
    RecordDetailSerializer,
    RecordFilter,
    RecordSerializer,
)
from ai_bridge.services import ai_service_probe
from groups.permissions import group_by_public_id, require_doctor
from imserver import ids
from imserver.errors import AIServiceUnavailable, NotFound
from imserver.pagination import paginator_for
from imserver.schema import BODY_ERRORS, ERRORS
from users.permissions import IsStaff


@extend_schema(tags=["ai"])
class AIInteractionViewSet(viewsets.GenericViewSet):
    queryset = AIInteractionRecord.objects.all()
    serializer_class = RecordSerializer
    lookup_field = "record_id"
    lookup_value_regex = ids.URL_PATTERN
    pagination_class = paginator_for("interactions")

    def _records(self):
        return (AIInteractionRecord.objects.visible_to(self.request.user)
                .select_related("group", "user_message", "ai_message").distinct())

    @extend_schema(parameters=[OpenApiParameter("group_id", str), OpenApiParameter("status", str)],
                   responses={200: RecordSerializer(many=True), **ERRORS})
    def list(self, request):
        """AI interaction records, newest first (in-group DOCTORs, staff)."""
        params = RecordFilter(data=request.query_params)
        params.is_valid(raise_exception=True)
        records = self._records()
        if "group_id" in params.validated_data:
            group = group_by_public_id(params.validated_data["group_id"])
            require_doctor(request.user, group)
            records = records.filter(group=group)
        if "status" in params.validated_data:
            records = records.filter(status=params.validated_data["status"])
        page = self.paginate_queryset(records.order_by("-id"))
        return self.get_paginated_response(RecordSerializer(page, many=True).data)

    @extend_schema(responses={200: RecordDetailSerializer, **ERRORS})
    def retrieve(self, request, record_id=None):
        """One record; staff also see the request and response bodies."""
        record = (AIInteractionRecord.objects.select_related("group", "user_message", "ai_message")
                  .filter(record_id=record_id).first())
        if record is None:
            raise NotFound(f"No AI interaction record {record_id!r}.")
        require_doctor(request.user, record.group)
        serializer = RecordDetailSerializer if request.user.is_staff else RecordSerializer
        return Response(serializer(record).data)


@extend_schema(tags=["ai"])
class AITestViewSet(viewsets.GenericViewSet):
    permission_classes = [IsStaff]
    serializer_class = ProbeSerializer

    @extend_schema(request=ProbeSerializer, responses={200: ProbeResultSerializer, 502: ERRORS[403], **BODY_ERRORS})
    @action(detail=False, methods=["post"], url_path="test")
    def probe(self, request):
        """Call the AI service once and report how it answered (staff)."""
        body = ProbeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = ai_service_probe(message=body.validated_data["message"])
        if not result["ok"] and result["status_code"] is None:
            raise AIServiceUnavailable(details={"error": result["error"]})
        return Response(result)
