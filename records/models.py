from django.db import models

from imserver import ids


def event_id() -> str:
    return ids.new_id("evt")


class AppendOnly(Exception):
    """Audit events are written once and never changed or deleted."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnly("Audit events cannot be changed.")

    def delete(self):
        raise AppendOnly("Audit events cannot be deleted.")


class AuditEvent(models.Model):
    """Who did what to which record, when, in which request: append-only (on PostgreSQL a trigger refuses
    UPDATE and DELETE too, whatever the client)."""

    event_id = models.CharField(max_length=48, unique=True, default=event_id, editable=False)
    # Public ids, not foreign keys: the trail outlives the users and groups it names.
    actor_id = models.CharField(max_length=48, blank=True, default="", help_text="Empty: the system.")
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=128)
    details = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        db_table = "audit_events"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["actor_id", "-id"], name="ix_audit_actor"),
            models.Index(fields=["action", "-id"], name="ix_audit_action"),
            models.Index(fields=["target", "-id"], name="ix_audit_target"),
        ]
        verbose_name = "audit event"

    def __str__(self):
        return f"{self.action} {self.target} by {self.actor_id or 'system'}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnly("Audit events cannot be changed.")
        super().save(*args, force_insert=True, **{k: v for k, v in kwargs.items() if k != "force_insert"})

    def delete(self, *args, **kwargs):
        raise AppendOnly("Audit events cannot be deleted.")
