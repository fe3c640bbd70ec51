from rest_framework import serializers

from ai_bridge.models import AIInteractionRecord, Status


class RecordSerializer(serializers.ModelSerializer):
    group_id = serializers.CharField(source="group.group_id")
    user_message_id = serializers.CharField(source="user_message.message_id")
    ai_message_id = serializers.SerializerMethodField()
    answered_by = serializers.SerializerMethodField()
    reviewed_by = serializers.SerializerMethodField()

    class Meta:
        model = AIInteractionRecord
        fields = ["record_id", "group_id", "user_message_id", "ai_message_id", "status", "attempts", "duration_ms",
                  "error_message", "answered_by", "draft", "reviewed_by", "reviewed_at", "created_at", "updated_at"]
        read_only_fields = fields

    def get_ai_message_id(self, record) -> str | None:
        return record.ai_message.message_id if record.ai_message else None

    def get_answered_by(self, record) -> str | None:
        """The record of the later message of the same burst that was answered instead (COALESCED)."""
        return record.answered_by.record_id if record.answered_by_id else None

    def get_reviewed_by(self, record) -> str | None:
        return record.reviewed_by.user_id if record.reviewed_by_id else None


class RecordDetailSerializer(RecordSerializer):
    """Staff also see what was sent and answered; the schema marks those fields optional, others never get them."""

    service_url = serializers.CharField(required=False)
    request_body = serializers.JSONField(required=False, allow_null=True)
    response_body = serializers.JSONField(required=False, allow_null=True)

    class Meta(RecordSerializer.Meta):
        fields = [*RecordSerializer.Meta.fields, "service_url", "request_body", "response_body"]
        read_only_fields = fields


class RecordFilter(serializers.Serializer):
    group_id = serializers.CharField(required=False, max_length=64)
    status = serializers.ChoiceField(choices=Status.choices, required=False)


class ApproveSerializer(serializers.Serializer):
    content = serializers.CharField(required=False, trim_whitespace=False,
                                    help_text="The doctor's edit of the draft; without it the draft is posted as is.")


class RejectSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class ProbeSerializer(serializers.Serializer):
    message = serializers.CharField(required=False, default="Hello from the IM server's AI test.", max_length=4000)


class ProbeResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    status_code = serializers.IntegerField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    reply = serializers.CharField(allow_null=True)
    error = serializers.CharField(allow_null=True)
