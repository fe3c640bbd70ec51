from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from ai_bridge.models import AIInteractionRecord, Status
from ai_bridge.review import ai_draft_approve, ai_draft_reject
from ai_bridge.serializers import (
    ApproveSerializer,
    ProbeResultSerializer,
    ProbeSerializer,
    RecordDetailSerializer,
    RecordFilter,
    RecordSerializer,
    RejectSerializer,
)
from ai_bridge.services import ai_service_probe
from chat.serializers import MessageSerializer, message_data
from groups.permissions import group_by_public_id, require_doctor
from imserver import ids
from imserver.audit import audit
from imserver.errors import AIServiceUnavailable, NotFound
from imserver.pagination import paginator_for
from imserver.schema import errors, example
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
                .select_related("group", "user_message", "ai_message", "answered_by", "reviewed_by").distinct())

    def _record(self, record_id: str) -> AIInteractionRecord:
        record = (AIInteractionRecord.objects.select_related("group", "user_message", "ai_message", "answered_by",
                                                             "reviewed_by").filter(record_id=record_id).first())
        if record is None:
            raise NotFound(f"No AI interaction record {record_id!r}.")
        return record

    @extend_schema(operation_id="ai_interaction_list",
                   parameters=[OpenApiParameter("group_id", str), OpenApiParameter("status", enum=Status.values)],
                   responses={200: RecordSerializer(many=True), **errors(400, 403, 404)})
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

    @extend_schema(operation_id="ai_interaction_get", responses={200: RecordDetailSerializer, **errors(403, 404)})
    def retrieve(self, request, record_id=None):
        """One record; staff also see the request and response bodies."""
        record = self._record(record_id)
        require_doctor(request.user, record.group)
        if not request.user.is_staff:
            return Response(RecordSerializer(record).data)
        audit(action="ai_record.read", target=record.record_id, details={"group_id": record.group.group_id})
        return Response(RecordDetailSerializer(record).data)


    @extend_schema(operation_id="ai_draft_approve", request=ApproveSerializer,
                   responses={201: MessageSerializer, **errors(403, 404, 409, body=True)},
                   examples=[example("as is", {}, "Post the draft unchanged"),
                             example("edited", {"content": "Rest today; we will call you tomorrow."},
                                     "Post the doctor's edit")])
    @action(detail=True, methods=["post"])
    def approve(self, request, record_id=None):
        """Post the draft, or the doctor's edit of it, as the AI's reply (in-group DOCTORs; 409 unless awaiting)."""
        body = ApproveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        reply = ai_draft_approve(record=self._record(record_id), doctor=request.user,
                                 content=body.validated_data.get("content"))
        return Response(message_data(reply), status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="ai_draft_reject", request=RejectSerializer,
                   responses={200: RecordSerializer, **errors(403, 404, 409, body=True)},
                   examples=[example("reject", {"reason": "Needs a phone call instead."}, "Reject the draft")])
    @action(detail=True, methods=["post"])
    def reject(self, request, record_id=None):
        """Reject the draft: nothing is posted (in-group DOCTORs; 409 unless awaiting review)."""
        body = RejectSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        record = ai_draft_reject(record=self._record(record_id), doctor=request.user,
                                 reason=body.validated_data["reason"])
        return Response(RecordSerializer(self._record(record.record_id)).data)


@extend_schema(tags=["ai"])
class AITestViewSet(viewsets.GenericViewSet):
    permission_classes = [IsStaff]
    serializer_class = ProbeSerializer

    @extend_schema(operation_id="ai_service_test", request=ProbeSerializer,
                   responses={200: ProbeResultSerializer, **errors(403, 502, body=True)},
                   examples=[example("probe", {"message": "Hello from the IM server's AI test."},
                                     "Call the AI service once")])
    @action(detail=False, methods=["post"], url_path="test")
    def probe(self, request):
        """Call the AI service once and report how it answered (staff)."""
        body = ProbeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = ai_service_probe(message=body.validated_data["message"])
        if not result["ok"] and result["status_code"] is None:
            raise AIServiceUnavailable(details={"error": result["error"]})
        return Response(result)
