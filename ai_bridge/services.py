"""AI bridge writes: records, the reply post, failure, dispatch and redispatch."""
import contextvars
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ai_bridge import client
from ai_bridge.models import AIInteractionRecord, Status
from chat import realtime
from chat.models import Message, MsgType
from chat.services import UNSTORABLE, message_send
from groups.models import GroupMember
from groups.services import member_add
from users.models import Role, User

logger = logging.getLogger(__name__)
_local_pool: ThreadPoolExecutor | None = None
_local_pool_lock = threading.Lock()


def ai_record_open(*, message: Message) -> AIInteractionRecord:
    """Open the one record of a forwarded patient message and dispatch its task after commit."""
    record = AIInteractionRecord.objects.create(group=message.group, user_message=message,
                                                service_url=client.endpoint())
    transaction.on_commit(lambda: ai_record_dispatch(record_id=record.record_id))
    return record


def ai_record_dispatch(*, record_id: str) -> None:
    """Hand the record to a Celery worker, or to an in-process thread on the embedded system.

    A broker that is down is logged, not raised: the sweep dispatches the record again."""
    from ai_bridge.tasks import ai_reply_generate, run_in_process

    if settings.CELERY_TASK_ALWAYS_EAGER:
        global _local_pool
        with _local_pool_lock:  # commits of several threads may dispatch at once
            if _local_pool is None:
                _local_pool = ThreadPoolExecutor(settings.AI_LOCAL_WORKERS, thread_name_prefix="ai-bridge")
        # The copied context carries the request id into the thread's logs.
        _local_pool.submit(contextvars.copy_context().run, run_in_process, record_id)
        return
    try:
        ai_reply_generate.apply_async(args=[record_id])
    except Exception:  # noqa: BLE001 - kombu raises many kinds; the record stays PROCESSING for the sweep
        logger.warning("could not dispatch AI record %s; the sweep will retry", record_id, exc_info=True)


def ai_history(*, message: Message) -> list[dict]:
    """The group's last AI_HISTORY_MESSAGES messages before `message`, as [{role, content}]."""
    rows = (Message.objects.filter(group_id=message.group_id, seq__lt=message.seq)
            .order_by("-seq").values_list("msg_type", "content")[: settings.AI_HISTORY_MESSAGES])
    return [{"role": "assistant" if kind == MsgType.AI_REPLY else "user", "content": content}
            for kind, content in reversed(rows)]


def ai_assistant_for(*, group) -> User:
    """The group's AI_ASSISTANT member; the default assistant account joins when there is none."""
    member = (GroupMember.objects.filter(group=group, user_role=Role.AI_ASSISTANT)
              .select_related("user").order_by("id").first())
    if member is not None:
        return member.user
    assistant = User.objects.filter(username=settings.AI_ASSISTANT_USERNAME).first()
    if assistant is None:
        from users.services import user_create

        assistant = user_create(username=settings.AI_ASSISTANT_USERNAME, user_role=Role.AI_ASSISTANT)
    if not GroupMember.objects.filter(group=group, user=assistant).exists():
        member_add(group=group, user=assistant, user_role=Role.AI_ASSISTANT)
    return assistant


def ai_attempt_begin(*, record: AIInteractionRecord) -> dict:
    """Count an attempt, tell the group the AI is thinking, and build the request body."""
    message = record.user_message
    body = client.request_body(message=message.content, history=ai_history(message=message),
                               group_id=record.group.group_id, user_id=message.sender.user_id,
                               message_id=message.message_id)
    AIInteractionRecord.objects.filter(pk=record.pk).update(
        attempts=record.attempts + 1, request_body=body, service_url=client.endpoint(), updated_at=timezone.now())
    record.attempts += 1
    realtime.group_event(record.group.group_id, {"type": "ai_status", "group_id": record.group.group_id,
                                                 "user_message_id": message.message_id, "status": "thinking"})
    return body


def ai_reply_post(*, record: AIInteractionRecord, answer: client.AIAnswer) -> Message | None:
    """Post the AI's answer as the group's assistant, once, and close the record as SUCCESS."""
    with transaction.atomic():
        locked = AIInteractionRecord.objects.select_for_update().get(pk=record.pk)
        if locked.status != Status.PROCESSING:
            return None
        assistant = ai_assistant_for(group=record.group)
        content = UNSTORABLE.sub("", answer.reply).strip()[: settings.AI_MAX_REPLY_CHARS]
        # The record id as client_msg_id makes a second post impossible even without the lock.
        reply, _ = message_send(sender=assistant, group=record.group, content=content, msg_type=MsgType.AI_REPLY,
                                client_msg_id=f"ai:{record.record_id}", reply_to=record.user_message, via="ai")
        locked.ai_message = reply
        locked.status = Status.SUCCESS
        locked.duration_ms = answer.duration_ms
        locked.response_body = answer.response_body
        locked.error_message = ""
        locked.save()
    return reply


def ai_record_fail(*, record: AIInteractionRecord, reason: str, response_body=None, notify: bool = True) -> None:
    """Give up on a record: FAILED with the reason, and `ai_status: failed` pushed to the group."""
    changed = AIInteractionRecord.objects.filter(pk=record.pk, status=Status.PROCESSING).update(
        status=Status.FAILED, error_message=reason[: settings.AI_RECORD_TEXT_MAX], response_body=response_body, updated_at=timezone.now())
    if changed and notify:
        realtime.group_event(record.group.group_id, {
            "type": "ai_status", "group_id": record.group.group_id,
            "user_message_id": record.user_message.message_id, "status": "failed"})


def ai_record_retry(*, record: AIInteractionRecord) -> bool:
    """Operator retry of a FAILED record: back to PROCESSING, dispatched again."""
    if record.status != Status.FAILED:
        return False
    AIInteractionRecord.objects.filter(pk=record.pk).update(status=Status.PROCESSING, attempts=0, error_message="",
                                                            updated_at=timezone.now())
    transaction.on_commit(lambda: ai_record_dispatch(record_id=record.record_id))
    return True


def ai_records_redispatch_stale() -> int:
    """Dispatch again every record left PROCESSING longer than AI_STALE_AFTER (lost at commit, worker died)."""
    cutoff = timezone.now() - timedelta(seconds=settings.AI_STALE_AFTER)
    ids = list(AIInteractionRecord.objects.stale(cutoff).values_list("record_id", flat=True)[: settings.AI_SWEEP_BATCH])
    for record_id in ids:
        AIInteractionRecord.objects.filter(record_id=record_id).update(updated_at=timezone.now())
        ai_record_dispatch(record_id=record_id)
    return len(ids)


def ai_service_probe(*, message: str) -> dict:
    """One call to the AI service, stored nowhere: `{ok, status_code, duration_ms, reply, error}`."""
    body = client.request_body(message=message, history=[], group_id="", user_id="", message_id="")
    try:
        answer = client.ai_call(body)
    except client.AIError as exc:
        return {"ok": False, "status_code": exc.status_code, "duration_ms": None, "reply": None,
                "error": exc.reason}
    return {"ok": True, "status_code": answer.status_code, "duration_ms": answer.duration_ms,
            "reply": answer.reply, "error": None}


