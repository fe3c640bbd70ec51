from rest_framework import serializers

from records.exports import FORMATS
from records.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["event_id", "actor_id", "action", "target", "details", "request_id", "created_at"]
        read_only_fields = fields


class AuditFilter(serializers.Serializer):
    """Each given and not empty narrows the list (`?actor=&action=member.add`: any actor)."""

    actor = serializers.CharField(required=False, allow_blank=True, max_length=48, help_text="A user_id.")
    action = serializers.CharField(required=False, allow_blank=True, max_length=64)
    target = serializers.CharField(required=False, allow_blank=True, max_length=128)


class ExportParams(serializers.Serializer):
    format = serializers.ChoiceField(choices=FORMATS, default="json")
