from django.db import models

from chat.models import Message
from groups.models import ChatGroup
from imserver import ids


class Status(models.TextChoices):
    PROCESSING = "PROCESSING", "Processing"
    SUCCESS = "SUCCESS", "Success"
    FAILED = "FAILED", "Failed"


class AIInteractionRecordQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Records of the groups where the user is an in-group DOCTOR; staff see all."""
        if user.is_staff:
            return self
        return self.filter(group__memberships__user=user, group__memberships__user_role="DOCTOR")

    def stale(self, older_than):
        return self.filter(status=Status.PROCESSING, updated_at__lt=older_than)


class AIInteractionRecord(models.Model):
    """One forwarded patient message and what became of it: exactly one per message."""

    record_id = models.CharField(max_length=48, unique=True, default=ids.record_id, editable=False)
    group = models.ForeignKey(ChatGroup, on_delete=models.CASCADE, related_name="ai_records")
    user_message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="ai_record")
    ai_message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    service_url = models.CharField(max_length=500, blank=True, default="")
    request_body = models.JSONField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROCESSING)
    attempts = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AIInteractionRecordQuerySet.as_manager()

    class Meta:
        db_table = "ai_interaction_records"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["status", "updated_at"], name="ix_air_status_updated"),
            models.Index(fields=["group", "-id"], name="ix_air_group"),
        ]
        verbose_name = "AI interaction record"

    def __str__(self):
        return f"{self.record_id} ({self.status})"
