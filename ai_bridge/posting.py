"""What reaches the group from the AI bridge, and the checks before it does."""
import time

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists
from django.utils import timezone

from ai_bridge import client
from ai_bridge.models import AIInteractionRecord, Status
from ai_bridge.storable import storable_json, storable_text
from chat import realtime
from chat.models import Message, MsgType
from chat.services import READ_ROLE, message_send
from groups.models import AIMode, ChatGroup, GroupMember
from groups.services import member_add
from imserver import publish
from imserver.errors import AlreadyMember, Conflict
from imserver.metrics import AI_FIRST_DELTA, AI_OUTCOMES
from imserver.patches import CompiledRead
from users.models import Role, User
from users.services import user_create

# The reads of every answer's checks, compiled once (README, Performance); the samples are ids no row has.
_ASSISTANT = CompiledRead(lambda group_id: GroupMember.objects.filter(group_id=group_id, user_role=Role.AI_ASSISTANT)
                          .select_related("user").order_by("id")[:1], group_id=-7_000_011)
_MODE = ("ai_mode", "ai_paused")
_GROUP = CompiledRead(lambda group_id: ChatGroup.objects.filter(pk=group_id).values(*_MODE)[:1], group_id=-7_000_012)
_GROUP_LOCKED = CompiledRead(lambda group_id: ChatGroup.objects.select_for_update().filter(pk=group_id)
                             .values(*_MODE)[:1], group_id=-7_000_013)


def _doctors_after(group_id: int, after_seq: int):
    return Message.objects.filter(group_id=group_id, seq__gt=after_seq, from_role=Role.DOCTOR)


_GROUP_AND_DOCTORS = CompiledRead(
    lambda group_id, after_seq: ChatGroup.objects.filter(pk=group_id)
    .annotate(doctor_wrote=Exists(_doctors_after(group_id, after_seq))).values(*_MODE, "doctor_wrote")[:1],
    group_id=-7_000_014, after_seq=-7_000_015)
_DOCTOR_WROTE = CompiledRead(lambda group_id, after_seq: _doctors_after(group_id, after_seq).values_list("pk")[:1],
                             group_id=-7_000_016, after_seq=-7_000_017)


def ai_assistant_ensure(*, group: ChatGroup) -> tuple[User, str | object]:
    """(the group's AI_ASSISTANT member, its in-group role to send with): the default assistant account joins
    first when there is none. The role is READ_ROLE (message_send reads it) when that account was a member of
    the group already, in some other role.

    Race-free: of two first replies at once, one adds the member and the other finds it (the unique member)."""
    member = _ASSISTANT.first(group_id=group.pk)
    if member is not None:
        return member.user, Role.AI_ASSISTANT
    assistant = User.objects.filter(username=settings.AI_ASSISTANT_USERNAME).first()
    if assistant is None:
        try:
            assistant = user_create(username=settings.AI_ASSISTANT_USERNAME, user_role=Role.AI_ASSISTANT)
        except Conflict:  # created by a concurrent first reply
            assistant = User.objects.get(username=settings.AI_ASSISTANT_USERNAME)
    try:
        member_add(group=group, user=assistant, user_role=Role.AI_ASSISTANT)
    except AlreadyMember:
        return assistant, READ_ROLE
    return assistant, Role.AI_ASSISTANT


def ai_hearing(*, group_id: int, after_seq: int | None = None, lock: bool = False,
               read: ChatGroup | None = None) -> tuple[str | None, str | None]:
    """(why an answer must not reach the group now, or None; the group's AI mode): switched off, paused, or
    (after `after_seq`) a doctor wrote. `read`: the group as the caller has just read it, judged as it is
    (without `after_seq` or `lock`).

    With `lock`, the group's row is held to the end of the transaction: a doctor's message, a switch-off or a
    pause either committed before this check (and is seen) or waits for what follows it. The doctor's messages
    are then read in a statement of their own, after the lock: one statement's snapshot predates its wait for
    the lock. Without, one statement reads both."""
    if read is not None:
        return _silence(read.ai_mode, read.ai_paused), read.ai_mode
    if lock:
        group = _GROUP_LOCKED.first(group_id=group_id)
    elif after_seq is not None:
        group = _GROUP_AND_DOCTORS.first(group_id=group_id, after_seq=after_seq)
    else:
        group = _GROUP.first(group_id=group_id)
    if group is None:
        return "the group no longer exists", None
    reason = _silence(group["ai_mode"], group["ai_paused"])
    if reason is None and after_seq is not None and (
            _DOCTOR_WROTE.first(group_id=group_id, after_seq=after_seq) is not None if lock else group["doctor_wrote"]):
        reason = "a doctor wrote in the group after the patient's message"
    return reason, group["ai_mode"]


def _silence(ai_mode: str, ai_paused: bool) -> str | None:
    if ai_mode == AIMode.OFF:
        return "the AI was switched off in this group"
    if ai_paused:
        return "an escalation waits for a doctor"
    return None


def ai_why_silent(*, group_id: int, after_seq: int | None = None, lock: bool = False,
                  read: ChatGroup | None = None) -> str | None:
    """Why an answer must not reach the group now (see ai_hearing), or None."""
    return ai_hearing(group_id=group_id, after_seq=after_seq, lock=lock, read=read)[0]


def ai_record_suppress(*, record: AIInteractionRecord, reason: str, answer: client.AIAnswer | None = None) -> bool:
    """The answer is not posted: SUPPRESSED with the reason, `ai_status: suppressed` pushed; nobody joins."""
    fields = {"status": Status.SUPPRESSED, "error_message": storable_text(reason), "updated_at": timezone.now()}
    if answer is not None:
        fields.update(draft=storable_text(answer.reply, settings.AI_MAX_REPLY_CHARS), duration_ms=answer.duration_ms,
                      response_body=storable_json(answer.response_body))
    changed = AIInteractionRecord.objects.filter(pk=record.pk, status=Status.PROCESSING).update(**fields)
    if changed:
        AI_OUTCOMES.labels("suppressed").inc()
        status_push(record, "suppressed")
    return bool(changed)


def reply_post(*, record: AIInteractionRecord, content: str, answer: client.AIAnswer | None = None,
                reviewed_by: User | None = None) -> Message:
    """Post the reply as the group's assistant and close the record as SUCCESS (inside the record's lock; only
    the fields it sets are written, so that a record read before its attempt began keeps what that stored)."""
    assistant, role = ai_assistant_ensure(group=record.group)
    # The record id as client_msg_id makes a second post impossible even without the lock; with it (every
    # caller holds it), no twin of this post can commit meanwhile.
    reply, _ = message_send(sender=assistant, group=record.group, content=content, msg_type=MsgType.AI_REPLY,
                            client_msg_id=f"ai:{record.record_id}", reply_to=record.user_message, via="ai",
                            sender_role=role, twin_excluded=True)
    record.ai_message = reply
    record.status = Status.SUCCESS
    record.error_message = ""
    if answer is not None:
        record.duration_ms = answer.duration_ms
        record.response_body = storable_json(answer.response_body)
    if reviewed_by is not None:
        record.reviewed_by, record.reviewed_at = reviewed_by, timezone.now()
    record.save(update_fields=["ai_message", "status", "error_message", "duration_ms", "response_body",
                               "reviewed_by", "reviewed_at", "updated_at"])
    return reply


def status_push(record: AIInteractionRecord, status: str) -> None:
    """`ai_status` to the group's connections, once what it reports has committed."""
    group_id = record.group.group_id
    frame = {"type": "ai_status", "group_id": group_id, "user_message_id": record.user_message.message_id,
             "status": status}
    transaction.on_commit(lambda: publish.group_event(group_id, frame))




class DeltaRelay:
    """Pushes a streamed answer to the group as it is written: `ai_delta` frames, at most one per record every
    AI_STREAM_FRAME_MS (pieces in between are joined), to the group's members, or to its doctors only in review
    mode. Before each frame it checks that the group may still hear the AI, and stops the stream when not; what
    is left when the stream ends leaves with the answer (flush_checked)."""

    def __init__(self, record: AIInteractionRecord):
        self.record = record
        self.group_id = record.group.group_id
        # Read with the first frame's check, before anything is pushed; from then on only ever turned on.
        self.doctors_only = False
        self.started = time.monotonic()
        self.index, self.pending, self.sent_at = 0, "", 0.0

    def __call__(self, text: str) -> None:
        if not self.pending and self.index == 0:
            AI_FIRST_DELTA.labels(settings.AI_SERVICE_PROTOCOL).observe(time.monotonic() - self.started)
        self.pending += text
        if time.monotonic() - self.sent_at >= settings.AI_STREAM_FRAME_MS / 1000:
            try:
                self.flush()
            finally:
                if not connection.in_atomic_block:
                    connection.close()  # back to the pool while the stream goes on

    def flush(self) -> None:
        """Push what has come since the last frame (raises client.StreamStopped when the group went silent)."""
        if not self.pending:
            return
        reason, mode = ai_hearing(group_id=self.record.group_id, after_seq=self.record.user_message.seq)
        if reason is not None:
            raise client.StreamStopped(reason)
        self._push(mode)

    def flush_checked(self, mode: str) -> None:
        """The last piece, once the answer's own checks have passed under the locks (the group's AI mode then):
        pushed after the answer commits, before what it commits. The deltas a member saw add up to the whole
        answer, and nothing of an answer that was not posted leaves after those checks."""
        if self.pending:
            transaction.on_commit(lambda: self._push(mode))

    def _push(self, mode: str) -> None:
        # In review mode (or switched to it mid-stream) the answer is a draft, for the doctors' eyes only.
        self.doctors_only = self.doctors_only or mode == AIMode.REVIEW
        frame = {"type": "ai_delta", "group_id": self.group_id, "record_id": self.record.record_id,
                 "user_message_id": self.record.user_message.message_id, "index": self.index, "text": self.pending}
        if self.doctors_only:
            realtime.role_event(group=self.record.group, role=Role.DOCTOR, frame=frame)
        else:
            publish.group_event(self.group_id, frame)
        self.index, self.pending, self.sent_at = self.index + 1, "", time.monotonic()
