"""Review mode: the AI's answer is a draft that an in-group DOCTOR approves, edits or rejects."""
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ai_bridge import client
from ai_bridge.escalation import ai_escalate
from ai_bridge.models import AIInteractionRecord, Status
from ai_bridge.posting import reply_post
from ai_bridge.storable import storable_json, storable_text
from chat import realtime
from chat.models import Message
from groups import permissions
from imserver.audit import audit
from imserver.errors import Conflict, PermissionDeniedError
from imserver.metrics import AI_OUTCOMES
from users.models import Role, User


def ai_draft_hold(*, record: AIInteractionRecord, content: str, answer: client.AIAnswer) -> None:
    """Keep the answer as the record's draft (AWAITING_REVIEW) and show it to the group's doctors only."""
    record.status = Status.AWAITING_REVIEW
    record.draft = content
    record.duration_ms = answer.duration_ms
    record.response_body = storable_json(answer.response_body)
    record.save(update_fields=["status", "draft", "duration_ms", "response_body", "updated_at"])
    frame = {"type": "ai_draft", "group_id": record.group.group_id, "record_id": record.record_id,
             "user_message_id": record.user_message.message_id, "content": content}
    transaction.on_commit(lambda: realtime.role_event(group=record.group, role=Role.DOCTOR, frame=frame))


def _awaiting(record: AIInteractionRecord, doctor: User) -> AIInteractionRecord:
    """The record locked, for an in-group DOCTOR, while its draft awaits review (else 403 / 409)."""
    if permissions.member_role(doctor, record.group) != Role.DOCTOR:
        raise PermissionDeniedError("Only the group's doctors review the AI's drafts.")
    locked = AIInteractionRecord.objects.select_for_update().select_related("group", "user_message").get(pk=record.pk)
    if locked.status != Status.AWAITING_REVIEW:
        raise Conflict(f"The record is {locked.status}, not awaiting review.", details={"status": locked.status})
    return locked


@transaction.atomic
def ai_draft_approve(*, record: AIInteractionRecord, doctor: User, content: str | None = None) -> Message:
    """Post the draft (or the doctor's edit of it) as the group's assistant; the record SUCCESS, reviewed_by set."""
    locked = _awaiting(record, doctor)
    reply = reply_post(record=locked, content=locked.draft if content is None else content, reviewed_by=doctor)
    audit(action="ai_draft.approve", target=locked.record_id, actor=doctor,
          details={"group_id": locked.group.group_id, "edited": content is not None, "message_id": reply.message_id})
    AI_OUTCOMES.labels("approved" if content is None else "approved_edited").inc()
    return reply


@transaction.atomic
def ai_draft_reject(*, record: AIInteractionRecord, doctor: User, reason: str = "") -> AIInteractionRecord:
    """Reject the draft: REJECTED, nothing is posted."""
    locked = _awaiting(record, doctor)
    locked.status = Status.REJECTED
    locked.error_message = storable_text(reason or "rejected by a doctor")
    locked.reviewed_by, locked.reviewed_at = doctor, timezone.now()
    locked.save(update_fields=["status", "error_message", "reviewed_by", "reviewed_at", "updated_at"])
    audit(action="ai_draft.reject", target=locked.record_id, actor=doctor, details={"group_id": locked.group.group_id})
    AI_OUTCOMES.labels("rejected").inc()
    return locked


def ai_drafts_expire() -> int:
    """Escalate every draft nobody reviewed within AI_REVIEW_TIMEOUT."""
    cutoff = timezone.now() - timedelta(seconds=settings.AI_REVIEW_TIMEOUT)
    expired = (AIInteractionRecord.objects.filter(status=Status.AWAITING_REVIEW, updated_at__lt=cutoff)
               .select_related("group", "user_message")[: settings.AI_SWEEP_BATCH])
    return sum(ai_escalate(record=record, reason=f"no doctor reviewed the AI's draft within "
                                                 f"{settings.AI_REVIEW_TIMEOUT} s") for record in expired)
