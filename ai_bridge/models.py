from django.conf import settings
from django.db import models

from chat.models import Message
from groups.models import ChatGroup
from imserver import ids
from imserver.crypto import EncryptedJSONField, EncryptedTextField


class Status(models.TextChoices):
    PROCESSING = "PROCESSING", "Processing"
    SUCCESS = "SUCCESS", "Success"  # a reply was posted
    FAILED = "FAILED", "Failed"
    COALESCED = "COALESCED", "Coalesced"  # a later message of the same burst was answered (answered_by)
    SUPPRESSED = "SUPPRESSED", "Suppressed"  # answered, not posted: switched off, paused, or a doctor wrote
    ESCALATED = "ESCALATED", "Escalated"  # a red flag or the AI asked for a human
    AWAITING_REVIEW = "AWAITING_REVIEW", "Awaiting review"  # review mode: the draft waits for a doctor
    REJECTED = "REJECTED", "Rejected"  # a doctor rejected the draft


class AIInteractionRecordQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Records of the groups where the user is an in-group DOCTOR; staff see all."""
        if user.is_staff:
            return self
        return self.filter(group__memberships__user=user, group__memberships__user_role="DOCTOR")

    def stale(self, older_than):
        return self.filter(status=Status.PROCESSING, updated_at__lt=older_than)

    def waiting(self, group):
        """The group's records not yet started: a newer one of the same burst may answer for them."""
        return self.filter(group=group, status=Status.PROCESSING, attempts=0)


class AIInteractionRecord(models.Model):
    """One forwarded patient message and what became of it: exactly one per message."""

    record_id = models.CharField(max_length=48, unique=True, default=ids.record_id, editable=False)
    group = models.ForeignKey(ChatGroup, on_delete=models.CASCADE, related_name="ai_records")
    user_message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="ai_record")
    ai_message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    service_url = models.CharField(max_length=500, blank=True, default="")
    # Encrypted at rest with IM_ENCRYPTION_KEYS, as the messages are: they carry the patient's words.
    request_body = EncryptedJSONField(null=True, blank=True)
    response_body = EncryptedJSONField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROCESSING)
    attempts = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    answered_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    draft = EncryptedTextField(blank=True, default="")
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
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


class TriageRule(models.Model):
    """A red flag: a patient message matching it is not sent to the AI; a doctor is alerted instead."""

    LANGUAGES = [("en", "English"), ("zh", "Chinese")]

    pattern = models.CharField(max_length=300, help_text="A phrase (matched case-insensitively) or a regular "
                                                         "expression when 'is regex' is ticked.")
    is_regex = models.BooleanField(default=False)
    language = models.CharField(max_length=8, choices=LANGUAGES, default="en",
                                help_text="The language of the notice the patient gets.")
    reason = models.CharField(max_length=200, help_text="What the doctors are told, e.g. 'chest pain'.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "ai_triage_rules"
        ordering = ["id"]

    def __str__(self):
        return f"{self.reason} ({self.language}): {self.pattern}"


class DeliveryStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    DELIVERED = "DELIVERED", "Delivered"
    FAILED = "FAILED", "Failed"


class EscalationDelivery(models.Model):
    """One escalation's signed POST to ESCALATION_WEBHOOK_URL, and how it went."""

    record = models.OneToOneField(AIInteractionRecord, on_delete=models.CASCADE, related_name="delivery")
    url = models.CharField(max_length=500)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "ai_escalation_deliveries"
        ordering = ["-id"]
        verbose_name_plural = "escalation deliveries"

    def __str__(self):
        return f"{self.record.record_id} → {self.url} ({self.status})"
