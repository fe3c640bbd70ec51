"""Escalation: a red flag or the AI hands the conversation to humans, in the chat and outside it."""
import hashlib
import hmac
import json
import logging

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ai_bridge import client
from ai_bridge.inprocess import run_local
from ai_bridge.models import AIInteractionRecord, DeliveryStatus, EscalationDelivery, Status
from ai_bridge.posting import ai_assistant_ensure, status_push
from ai_bridge.storable import storable_json, storable_text
from chat import realtime
from chat.models import MsgType
from chat.services import message_send
from groups.models import ChatGroup
from imserver.audit import audit
from imserver.metrics import AI_OUTCOMES
from users.models import Role

logger = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-IM-Signature"  # "sha256=<hex HMAC-SHA256 of the body under ESCALATION_WEBHOOK_SECRET>"
# Escalations come from a record that is being worked on or from a draft nobody reviewed.
ESCALATABLE = (Status.PROCESSING, Status.AWAITING_REVIEW)


def ai_escalate(*, record: AIInteractionRecord, reason: str, language: str = "en", draft: str = "",
                answer: client.AIAnswer | None = None) -> bool:
    """ESCALATED; the group paused until a doctor writes; the patient told a doctor was alerted; the group's
    doctors get the `escalation` frame; the webhook, when set, a signed POST. False when already settled."""
    with transaction.atomic():
        fields = {"status": Status.ESCALATED, "error_message": storable_text(reason), "updated_at": timezone.now()}
        if draft:
            fields["draft"] = storable_text(draft, settings.AI_MAX_REPLY_CHARS)
        if answer is not None:
            fields.update(duration_ms=answer.duration_ms, response_body=storable_json(answer.response_body))
        if not AIInteractionRecord.objects.filter(pk=record.pk, status__in=ESCALATABLE).update(**fields):
            return False
        ChatGroup.objects.filter(pk=record.group_id).update(ai_paused=True)
        audit(action="ai_record.escalate", target=record.record_id,
              details={"group_id": record.group.group_id, "reason": storable_text(reason)})
        notices = settings.AI_ESCALATION_NOTICES
        assistant, role = ai_assistant_ensure(group=record.group)
        message_send(sender=assistant, group=record.group, content=notices.get(language) or notices["en"],
                     msg_type=MsgType.SYSTEM, client_msg_id=f"esc:{record.record_id}", reply_to=record.user_message,
                     via="ai", sender_role=role)
        delivery = None
        if settings.ESCALATION_WEBHOOK_URL:
            delivery = EscalationDelivery.objects.create(record=record, url=settings.ESCALATION_WEBHOOK_URL)
        frame = {"type": "escalation", "group_id": record.group.group_id, "record_id": record.record_id,
                 "user_message_id": record.user_message.message_id, "reason": storable_text(reason)}
        transaction.on_commit(lambda: realtime.role_event(group=record.group, role=Role.DOCTOR, frame=frame))
        if answer is not None:  # whatever of the answer was streamed is not the answer: clients drop it
            status_push(record, "suppressed")
        if delivery is not None:
            transaction.on_commit(lambda: escalation_dispatch(delivery_id=delivery.pk))
    AI_OUTCOMES.labels("escalated").inc()
    return True


def escalation_dispatch(*, delivery_id: int) -> None:
    """Send the webhook from a Celery worker (or a thread of the embedded system): never from the send path."""
    # ai_bridge.tasks imports this module (the delivery's steps): a cycle at import.
    from ai_bridge.tasks import escalation_deliver, escalation_deliver_in_process

    if settings.AI_TASKS_IN_PROCESS:
        return run_local(escalation_deliver_in_process, delivery_id)
    try:
        escalation_deliver.apply_async(args=[delivery_id])
    except Exception:  # noqa: BLE001 - the delivery stays PENDING, visible in the admin
        logger.warning("could not dispatch escalation delivery %s", delivery_id, exc_info=True)


def escalation_payload(record: AIInteractionRecord) -> bytes:
    """The webhook's body: who and where, not what (the message stays in the chat)."""
    body = {"event": "escalation", "record_id": record.record_id, "group_id": record.group.group_id,
            "group_name": record.group.group_name, "user_message_id": record.user_message.message_id,
            "patient_user_id": record.user_message.sender.user_id, "reason": record.error_message,
            "escalated_at": record.updated_at.isoformat()}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def escalation_signature(body: bytes) -> str:
    """The signature header's value for a body."""
    digest = hmac.new(settings.ESCALATION_WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def escalation_deliver_once(*, delivery_id: int) -> bool | None:
    """One POST of a delivery: True when delivered, False to try again later, None when settled."""
    delivery = (EscalationDelivery.objects.select_related("record__group", "record__user_message__sender")
                .filter(pk=delivery_id).first())
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return None
    body = escalation_payload(delivery.record)
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: escalation_signature(body)}
    code, error = None, ""
    try:
        response = httpx.post(delivery.url, content=body, headers=headers,
                              timeout=settings.ESCALATION_WEBHOOK_TIMEOUT)
        code = response.status_code
        if not 200 <= code < 300:
            error = f"answered {code}"
    except httpx.HTTPError as exc:
        error = f"{exc.__class__.__name__}"
    attempts = delivery.attempts + 1
    if not error:
        status = DeliveryStatus.DELIVERED
    else:
        status = DeliveryStatus.FAILED if attempts >= settings.ESCALATION_WEBHOOK_MAX_ATTEMPTS else delivery.status
    EscalationDelivery.objects.filter(pk=delivery.pk).update(
        attempts=attempts, response_code=code, last_error=error, status=status, updated_at=timezone.now())
    if error:
        logger.warning("escalation webhook for %s failed (%s), attempt %s", delivery.record.record_id, error, attempts)
        return None if status == DeliveryStatus.FAILED else False
    return True
