from django.conf import settings
from django.db import models

from groups.models import ChatGroup
from imserver import ids
from imserver.crypto import EncryptedTextField
from users.models import Role

CLIENT_MSG_ID_MAX = 64  # longest client_msg_id (the send path and the serializers check it)


class MsgType(models.TextChoices):
    TEXT = "TEXT", "Text"
    IMAGE = "IMAGE", "Image URL"
    AI_REPLY = "AI_REPLY", "AI reply"
    SYSTEM = "SYSTEM", "System notice"  # the AI bridge's notices, such as an escalation; never sent to the AI


class MessageQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Messages of the groups the user belongs to; staff see all."""
        if user.is_staff:
            return self
        return self.filter(group__memberships__user=user)

    def with_refs(self):
        return self.select_related("group", "sender", "reply_to")

    def catch_up(self, group, *, after_seq: int, limit: int) -> tuple[list, bool]:
        """Up to `limit` messages of the group after `after_seq`, ascending, and whether more follow."""
        rows = list(self.with_refs().filter(group=group, seq__gt=after_seq).order_by("seq")[: limit + 1])
        return rows[:limit], len(rows) > limit


class Message(models.Model):
    """One message of a group, numbered by the group's gapless `seq`."""

    message_id = models.CharField(max_length=48, unique=True, default=ids.message_id, editable=False)
    group = models.ForeignKey(ChatGroup, on_delete=models.CASCADE, related_name="messages")
    seq = models.BigIntegerField()
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="messages_sent")
    from_role = models.CharField(max_length=32, choices=Role.choices)
    msg_type = models.CharField(max_length=16, choices=MsgType.choices, default=MsgType.TEXT)
    # Encrypted at rest when IM_ENCRYPTION_KEYS is set (imserver.crypto): never filter on it in SQL.
    content = EncryptedTextField()
    client_msg_id = models.CharField(max_length=64, null=True, blank=True)
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        db_table = "messages"
        ordering = ["group_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["group", "seq"], name="uq_message_group_seq"),
            models.UniqueConstraint(
                fields=["group", "sender", "client_msg_id"],
                condition=models.Q(client_msg_id__isnull=False),
                name="uq_message_client_msg_id",
            ),
        ]
        # A member's own messages after their read watermark, for unread counts (ChatGroup.with_read_state).
        indexes = [models.Index(fields=["sender", "group", "seq"], name="ix_message_sender_group_seq")]

    def __str__(self):
        return f"{self.message_id} #{self.seq}"
