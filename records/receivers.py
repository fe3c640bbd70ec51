"""records/ stores what the services announce: no app imports records."""
from records.models import AuditEvent


def audit_event_store(sender, *, actor_id: str, action: str, target: str, details: dict, request_id: str,
                      **kwargs) -> None:
    """Store one announced audit event (in the announcing service's transaction, when it has one)."""
    AuditEvent.objects.create(actor_id=actor_id, action=action, target=target, details=details,
                              request_id=request_id)
