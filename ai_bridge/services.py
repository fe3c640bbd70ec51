"""AI bridge writes: a record's life from the patient's message to the reply, or to why there is none.

PROCESSING → (red flag) ESCALATED | (a later message of the burst) COALESCED | (switched off, paused, a doctor
wrote) SUPPRESSED | (review mode) AWAITING_REVIEW → SUCCESS / REJECTED / ESCALATED | SUCCESS | FAILED.
Every decision that a patient could notice is taken under row locks: the record's, then the group's."""
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ai_bridge import client, triage
from ai_bridge.escalation import ai_escalate
from ai_bridge.inprocess import run_local
from ai_bridge.models import AIInteractionRecord, Status
from ai_bridge.posting import DeltaRelay, ai_hearing, ai_record_suppress, ai_why_silent, reply_post, status_push
from ai_bridge.review import ai_draft_hold, ai_drafts_expire
from ai_bridge.storable import storable_json, storable_text
from chat.models import Message, MsgType
from groups.models import AIMode
from imserver.metrics import AI_OUTCOMES
from imserver.patches import CompiledRead

logger = logging.getLogger(__name__)
# Read for every AI call and answer, compiled once (README, Performance).
_HISTORY = CompiledRead(
    lambda group_id, seq: Message.objects.filter(group_id=group_id, seq__lt=seq).exclude(msg_type=MsgType.SYSTEM)
    .order_by("-seq").values_list("msg_type", "content")[: settings.AI_HISTORY_MESSAGES],
    shape=lambda: settings.AI_HISTORY_MESSAGES, group_id=-7_000_001, seq=-7_000_002)
_STATUS_LOCKED = CompiledRead(
    lambda pk: AIInteractionRecord.objects.select_for_update().filter(pk=pk).values_list("status", flat=True)[:1],
    pk=-7_000_003)


def ai_record_open(*, message: Message) -> AIInteractionRecord:
    """Open the one record of a forwarded patient message: escalate a red flag at once, else dispatch the task
    after commit (the message's own transaction: a red flag never reaches the AI, whatever the workers do)."""
    record = AIInteractionRecord.objects.create(group=message.group, user_message=message,
                                                service_url=client.endpoint())
    flag = triage.red_flag(message.content)
    if flag is not None:
        ai_escalate(record=record, reason=f"red flag: {flag.reason}", language=flag.language)
    else:
        transaction.on_commit(lambda: ai_record_dispatch(record_id=record.record_id))
    return record


def ai_record_dispatch(*, record_id: str) -> None:
    """Hand the record to a Celery worker, or to an in-process thread on the embedded system.

    A broker that is down is logged, not raised: the sweep dispatches the record again."""
    from ai_bridge.tasks import ai_reply_generate, run_in_process  # tasks imports this module (its steps)

    if settings.AI_TASKS_IN_PROCESS:
        return run_local(run_in_process, record_id)
    try:
        ai_reply_generate.apply_async(args=[record_id])
    except Exception:  # noqa: BLE001 - kombu raises many kinds; the record stays PROCESSING for the sweep
        logger.warning("could not dispatch AI record %s; the sweep will retry", record_id, exc_info=True)


def ai_history(*, message: Message) -> list[dict]:
    """The group's last AI_HISTORY_MESSAGES messages before `message`, as [{role, content}]; SYSTEM notices are
    the bridge's own words to the patient, not the conversation."""
    rows = _HISTORY.all(group_id=message.group_id, seq=message.seq)
    return [{"role": "assistant" if kind == MsgType.AI_REPLY else "user", "content": content}
            for kind, content in reversed(rows)]


def ai_record_start(*, record: AIInteractionRecord) -> dict | float | None:
    """Begin a record's first attempt: the request body; or the seconds until its burst may have ended; or None
    when there is nothing to call (suppressed, answered by a later message of its burst, settled or started
    elsewhere).

    The burst is decided in the database, under the locks of the group's waiting records, so that any number of
    workers agree: the newest waiting record answers for the older ones (COALESCED, `answered_by` it). With no
    window there is no burst, and the attempt's conditional update alone decides which delivery calls."""
    reason = ai_why_silent(group_id=record.group_id, read=record.group)  # read with the record, just before
    if reason is not None:  # no call for a group already switched off or paused
        ai_record_suppress(record=record, reason=reason)
        return None
    window = timedelta(seconds=settings.AI_COALESCE_SECONDS)
    if not window:  # no window, no coalescing: each record answers for itself alone
        return ai_attempt_begin(record=record)
    wait = (record.created_at + window - timezone.now()).total_seconds()
    if wait > 0:
        return wait
    with transaction.atomic():
        waiting = list(AIInteractionRecord.objects.waiting(record.group_id).select_for_update().order_by("id"))
        if record.pk not in {w.pk for w in waiting}:
            return None  # answered for by a later message of its burst, or started by another delivery
        if any(w.pk > record.pk and w.created_at - record.created_at <= window for w in waiting):
            return None  # a later message of the same burst answers for this one
        older = [w.pk for w in waiting if w.pk < record.pk]
        if older:
            AIInteractionRecord.objects.filter(pk__in=older).update(
                status=Status.COALESCED, answered_by=record, updated_at=timezone.now())
            AI_OUTCOMES.labels("coalesced").inc(len(older))
        return ai_attempt_begin(record=record)


def ai_attempt_retry(*, record: AIInteractionRecord) -> dict | None:
    """Begin another attempt: the request body, or None when the group went silent meanwhile (SUPPRESSED)."""
    reason = ai_why_silent(group_id=record.group_id, after_seq=record.user_message.seq)
    if reason is not None:
        ai_record_suppress(record=record, reason=reason)
        return None
    return ai_attempt_begin(record=record)


def ai_attempt_begin(*, record: AIInteractionRecord) -> dict | None:
    """Count an attempt, tell the group the AI is thinking, and build the request body; None when another
    delivery of the task counted this attempt first, or the record was settled meanwhile (nothing to call)."""
    message = record.user_message
    body = client.request_body(message=message.content, history=ai_history(message=message),
                               group_id=record.group.group_id, user_id=message.sender.user_id,
                               message_id=message.message_id)
    counted = AIInteractionRecord.objects.filter(
        pk=record.pk, status=Status.PROCESSING, attempts=record.attempts).update(
        attempts=record.attempts + 1, request_body=storable_json(body), service_url=client.endpoint(),
        updated_at=timezone.now())
    if not counted:
        return None
    record.attempts += 1
    status_push(record, "thinking")
    return body


def ai_answer_handle(*, record: AIInteractionRecord, answer: client.AIAnswer,
                     relay: DeltaRelay | None = None) -> Message | None:
    """What becomes of the AI's answer: suppressed, escalated, a draft for review, or the posted reply; `relay`
    the stream's, whose last piece leaves only with a draft or a reply.

    Decided under the record's lock and then the group's, just before anything reaches the patient."""
    with transaction.atomic():
        status = _STATUS_LOCKED.first(pk=record.pk)
        if status != Status.PROCESSING:
            return None
        reason, mode = ai_hearing(group_id=record.group_id, after_seq=record.user_message.seq, lock=True)
        if reason is not None:
            ai_record_suppress(record=record, reason=reason, answer=answer)
            return None
        if answer.escalate:
            ai_escalate(record=record, reason=f"the AI asked for a doctor: {answer.escalate_reason}",
                        draft=answer.reply, answer=answer)
            return None
        content = storable_text(answer.reply, settings.AI_MAX_REPLY_CHARS).strip()
        if relay is not None:
            relay.flush_checked(mode)
        if mode == AIMode.REVIEW:
            ai_draft_hold(record=record, content=content, answer=answer)
            return None
        return reply_post(record=record, content=content, answer=answer)


def ai_record_fail(*, record: AIInteractionRecord, reason: str, response_body=None, notify: bool = True) -> None:
    """Give up on a record: FAILED with the reason, and `ai_status: failed` pushed to the group."""
    changed = AIInteractionRecord.objects.filter(pk=record.pk, status=Status.PROCESSING).update(
        status=Status.FAILED, error_message=storable_text(reason), response_body=storable_json(response_body),
        updated_at=timezone.now())
    if changed and notify:
        status_push(record, "failed")


def ai_record_retry(*, record: AIInteractionRecord) -> bool:
    """Operator retry of a FAILED record: back to PROCESSING, dispatched again."""
    if record.status != Status.FAILED:
        return False
    AIInteractionRecord.objects.filter(pk=record.pk).update(status=Status.PROCESSING, attempts=0, error_message="",
                                                            updated_at=timezone.now())
    transaction.on_commit(lambda: ai_record_dispatch(record_id=record.record_id))
    return True


def ai_records_redispatch_stale() -> int:
    """Dispatch again every record left PROCESSING longer than AI_STALE_AFTER (lost at commit, worker died);
    escalate every draft left unreviewed longer than AI_REVIEW_TIMEOUT."""
    cutoff = timezone.now() - timedelta(seconds=settings.AI_STALE_AFTER)
    ids = list(AIInteractionRecord.objects.stale(cutoff).values_list("record_id", flat=True)[: settings.AI_SWEEP_BATCH])
    for record_id in ids:
        AIInteractionRecord.objects.filter(record_id=record_id).update(updated_at=timezone.now())
        ai_record_dispatch(record_id=record_id)
    return len(ids) + ai_drafts_expire()


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
