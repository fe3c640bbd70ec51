"""The one send path: every message, from any transport, is written here."""
import re
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, connection, connections, transaction
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

from chat import realtime, sendhints
from chat.models import CLIENT_MSG_ID_MAX, Message, MsgType
from groups import permissions
from groups.models import ChatGroup, GroupMember
from imserver import asyncdb
from imserver.errors import NotFound, NotGroupMember, PayloadTooLarge, PermissionDeniedError, ValidationFailed
from imserver.metrics import MESSAGES_SENT, SEND_PATHS
from imserver.throttling import send_rate_check, send_rate_check_async, send_rate_return_async
from users.models import Role, User

# What users send from their clients; AI_REPLY and SYSTEM are the AI bridge's alone.
CLIENT_TRANSPORTS = ("http", "websocket")
CLIENT_TYPES = (MsgType.TEXT, MsgType.IMAGE)
# The AI bridge's own replies are bounded by the patients' sends that cause them, not by a rate of their own.
RATE_EXEMPT = ("ai",)
# PostgreSQL cannot store NUL, and UTF-8 has no lone surrogates.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class _Repeat(Exception):
    """Raised inside the transaction when the message already exists: nothing of it is kept."""

    def __init__(self, message):
        self.message = message


def _clean_content(content, msg_type: str) -> str:
    if not isinstance(content, str):
        raise ValidationFailed("content must be a string.", details={"content": ["Not a string."]})
    content = content.strip()
    if UNSTORABLE.search(content):
        raise ValidationFailed("content may not contain NUL or unpaired surrogate characters.",
                               details={"content": ["Unstorable characters."]})
    if not content:
        raise ValidationFailed("content may not be empty.", details={"content": ["Empty after trimming."]})
    limit = settings.IM_MAX_MESSAGE_CHARS
    if len(content) > limit:
        raise PayloadTooLarge(f"content is longer than {limit} characters.",
                              details={"content": [f"{len(content)} > {limit} characters."], "max_chars": limit})
    if msg_type == MsgType.IMAGE:
        try:
            URLValidator(schemes=["http", "https"])(content)
        except DjangoValidationError as exc:
            raise ValidationFailed("An IMAGE message's content must be an http(s) URL.",
                                   details={"content": ["Not a URL."]}) from exc
    return content


def _check_client_msg_id(client_msg_id) -> str | None:
    if client_msg_id in (None, ""):
        return None
    if not isinstance(client_msg_id, str) or len(client_msg_id) > CLIENT_MSG_ID_MAX or \
            UNSTORABLE.search(client_msg_id):
        raise ValidationFailed(f"client_msg_id must be a string of at most {CLIENT_MSG_ID_MAX} characters.",
                               details={"client_msg_id": ["Too long or not a string."]})
    return client_msg_id


def _existing(group: ChatGroup, sender: User, client_msg_id: str) -> Message | None:
    return (Message.objects.select_related("reply_to")
            .filter(group=group, sender=sender, client_msg_id=client_msg_id).first())


# `sender_role` not given: the service reads it.
READ_ROLE = object()


def message_validate(*, sender: User, group: ChatGroup, content, msg_type: str = MsgType.TEXT,
                     client_msg_id: str | None = None, via: str = "code",
                     sender_role=READ_ROLE) -> tuple[str, str, str | None]:
    """Check a message before it is stored: `(sender's in-group role, trimmed content, client_msg_id)`."""
    allowed = CLIENT_TYPES if via in CLIENT_TRANSPORTS else MsgType.values
    if msg_type not in allowed:
        raise ValidationFailed(f"msg_type must be one of {', '.join(allowed)}.",
                               details={"msg_type": [f"Not a type you may send: {msg_type!r}."]})
    member_role = permissions.member_role(sender, group) if sender_role is READ_ROLE else sender_role
    if member_role is None:
        raise NotGroupMember(details={"group_id": group.group_id})
    content = _clean_content(content, msg_type)
    client_msg_id = _check_client_msg_id(client_msg_id)
    if msg_type == MsgType.AI_REPLY and member_role != Role.AI_ASSISTANT:
        raise PermissionDeniedError("Only the group's AI assistant sends AI_REPLY messages.")

    return member_role, content, client_msg_id


def message_send(*, sender: User, group: ChatGroup, content, msg_type: str = MsgType.TEXT,
                 client_msg_id: str | None = None, reply_to: Message | None = None,
                 via: str = "code", sender_role=READ_ROLE, twin_excluded: bool = False) -> tuple[Message, bool]:
    """Store a message with the group's next seq and push it after commit.

    Returns `(message, created)`; a repeat of `client_msg_id` by the same sender returns the first
    message with `created` False. `via` names the transport, for the metrics; `sender_role` is the sender's
    in-group role (None: not a member) when the caller read it with the group (groups.permissions.group_with_role).
    `twin_excluded`: the caller's transaction holds a lock that rules out any other send of this client_msg_id,
    stored or waiting (the AI bridge's lock on a record not yet answered): inside that transaction the send then
    needs no savepoint to recover from one (two round trips fewer), and should one turn up after all, the
    caller's whole transaction rolls back."""
    member_role, content, client_msg_id = message_validate(
        sender=sender, group=group, content=content, msg_type=msg_type, client_msg_id=client_msg_id, via=via,
        sender_role=sender_role)
    if via not in RATE_EXEMPT:
        send_rate_check(sender)
    message = Message(group=group, sender=sender, from_role=member_role, msg_type=msg_type, content=content,
                      client_msg_id=client_msg_id, reply_to=reply_to, created_at=timezone.now())
    try:
        with transaction.atomic(savepoint=not twin_excluded):
            _store(message, lift_pause=member_role == Role.DOCTOR)
            group.last_seq = message.seq
            if member_role == Role.DOCTOR:
                group.ai_paused = False
            transaction.on_commit(lambda: _stored(message, via))
    except _Repeat as repeat:
        return _bind(repeat.message, group, sender), False
    except IntegrityError:
        # A twin with the same client_msg_id committed while this one waited for the group's row: the
        # unique constraint refused the copy, and the rollback undid the seq bump.
        if client_msg_id is None or twin_excluded:
            raise
        found = _existing(group, sender, client_msg_id)
        if found is None:
            raise
        return _bind(found, group, sender), False
    return message, True


# Tests `(group, sender's in-group role, msg_type)` of apps whose post_save receivers act on some messages inside
# the message's transaction (orm_path_for); the direct path leaves those messages to the ORM path.
_ORM_PATH_TESTS: list[Callable[[ChatGroup, str, str], bool]] = []
# The group columns those tests read: the direct path's statement checks they still hold what it tested.
_ORM_PATH_COLUMNS: list[str] = []


def orm_path_for(test: Callable[[ChatGroup, str, str], bool], *, reads: tuple[str, ...]) -> None:
    """Have the messages for which `test(group, from_role, msg_type)` holds stored through the ORM, pre_save and
    post_save sent inside the transaction (call it from an AppConfig.ready()). `reads` names the group's fields
    the test reads."""
    _ORM_PATH_TESTS.append(test)
    _ORM_PATH_COLUMNS.extend(ChatGroup._meta.get_field(name).column for name in reads
                             if ChatGroup._meta.get_field(name).column not in _ORM_PATH_COLUMNS)


async def message_send_direct(*, sender: User, group_id: str, content, msg_type: str = MsgType.TEXT,
                              client_msg_id: str | None = None, via: str) -> tuple[Message, bool] | None:
    """message_send from the server's event loop, for a client's send: the same checks, rate and statement, and
    the same push after the commit, without a thread, a transaction around the statement, or Django's request.

    None when the message is for the ORM path (message_send, in a thread): no direct path here
    (imserver.asyncdb.available), a repeat or a lost race to look up, or an app that wants its post_save inside
    the transaction (orm_path_for); nothing has been stored then. The signals are not sent for the messages
    stored here: no receiver acts on them. The group and the sender's role may come from this process's hint
    (chat.sendhints), which the statement checks as it stores; the message's group is then the hint's, current
    in its ids only. Raises what message_send raises."""
    if not asyncdb.available():
        return None
    hint = sendhints.hint_get(group_id, sender.pk)
    async with asyncdb.connection() as conn:  # one checkout for both statements
        if hint is None:
            group, role = await permissions.agroup_with_role(group_id, sender, conn)
        else:
            group, role = hint
        member_role, content, client_msg_id = message_validate(
            sender=sender, group=group, content=content, msg_type=msg_type, client_msg_id=client_msg_id, via=via,
            sender_role=role)
        if hint is None:
            sendhints.hint_keep(group_id, sender.pk, group, member_role)
        if any(test(group, member_role, msg_type) for test in _ORM_PATH_TESTS):
            if hint is not None:  # read again next time: what the test read may have changed since
                sendhints.hint_drop(group_id, sender.pk)
            return None
        counted_at = await send_rate_check_async(sender)
        message = Message(group=group, sender=sender, from_role=member_role, msg_type=msg_type, content=content,
                          client_msg_id=client_msg_id, created_at=timezone.now())
        try:
            row = await asyncdb.fetchone(*_send_statement(message, lift_pause=member_role == Role.DOCTOR,
                                                          still=group), conn)
        except IntegrityError:  # a twin with the same client_msg_id committed first: the ORM path finds it
            row = None
    if row is None:  # a repeat, a lost race, or what was read of the group or the sender no longer holds
        sendhints.hint_drop(group_id, sender.pk)
        await send_rate_return_async(sender, counted_at)  # the ORM path counts it
        return None
    message.pk, message.seq = row
    message._state.adding, message._state.db = False, asyncdb.ALIAS
    _stored(message, via, "direct")
    return message, True


def _stored(message: Message, via: str, path: str = "orm") -> None:
    MESSAGES_SENT.labels(via, message.msg_type).inc()
    SEND_PATHS.labels(path).inc()
    realtime.message_push(message)


# The columns the send statement fills, in the model's order; `seq` comes from the group's bumped last_seq.
_INSERTED = [f for f in Message._meta.concrete_fields if not f.primary_key and f.attname != "seq"]
_INSERT = (f" RETURNING last_seq) INSERT INTO {Message._meta.db_table} ({', '.join(f.column for f in _INSERTED)}, seq)"
           f" SELECT {', '.join(['%s'] * len(_INSERTED))}, last_seq FROM bump RETURNING id, seq")
_NOT_STORED_YET = (f" AND NOT EXISTS (SELECT 1 FROM {Message._meta.db_table}"
                   " WHERE group_id = %s AND sender_id = %s AND client_msg_id = %s)")
_STILL_MEMBER = (f" AND EXISTS (SELECT 1 FROM {GroupMember._meta.db_table}"
                 " WHERE group_id = %s AND user_id = %s AND user_role = %s)")


def _store(message: Message, *, lift_pause: bool) -> None:
    """Give the message the group's next seq and store it, as `Model.save()` would, signals included.

    On PostgreSQL the seq bump and the insert are one statement: one round trip, and the group's row is locked
    from that statement to the commit, not across statements and Python in between."""
    if connection.vendor != "postgresql":
        message.seq = _next_seq(message.group, message.sender, message.client_msg_id, lift_pause=lift_pause)
        message.save(force_insert=True)
        return
    pre_save.send(sender=Message, instance=message, raw=False, using=connection.alias, update_fields=None)
    _bump_and_insert(message, lift_pause=lift_pause)
    message._state.adding, message._state.db = False, connection.alias
    post_save.send(sender=Message, instance=message, created=True, update_fields=None, raw=False,
                   using=connection.alias)


def _bump_and_insert(message: Message, *, lift_pause: bool) -> None:
    with connection.cursor() as cursor:
        cursor.execute(*_send_statement(message, lift_pause=lift_pause))
        row = cursor.fetchone()
    if row is None:
        _gone_or_repeat(message.group, message.sender, message.client_msg_id)
    message.pk, message.seq = row


def _send_statement(message: Message, *, lift_pause: bool, still: ChatGroup | None = None) -> tuple[str, list]:
    """The one statement that bumps the group's last_seq and stores the message (PostgreSQL): `(id, seq)`, or no
    row when the group is gone or the sender stored this client_msg_id before. With `still`, the group as the
    caller read it, also no row unless the sender still is a member with the message's from_role and the group's
    columns the ORM-path tests read still hold their values there."""
    pause = ", ai_paused = FALSE" if lift_pause else ""
    params: list = [message.group_id]
    checks = ""
    if still is not None:
        checks = _STILL_MEMBER + "".join(f" AND {column} = %s" for column in _ORM_PATH_COLUMNS)
        params += [message.group_id, message.sender_id, message.from_role]
        params += [getattr(still, ChatGroup._meta.get_field(column).attname) for column in _ORM_PATH_COLUMNS]
    if message.client_msg_id is not None:  # a repeat bumps nothing and stores nothing
        checks += _NOT_STORED_YET
        params += [message.group_id, message.sender_id, message.client_msg_id]
    db = connections[asyncdb.ALIAS]  # for the fields' conversions only (encryption of the content)
    params += [f.get_db_prep_save(getattr(message, f.attname), db) for f in _INSERTED]
    return (f"WITH bump AS (UPDATE {ChatGroup._meta.db_table} SET last_seq = last_seq + 1{pause}"
            f" WHERE id = %s{checks}{_INSERT}"), params


def _gone_or_repeat(group: ChatGroup, sender: User, client_msg_id: str | None):
    """Nothing was bumped: the sender stored this client_msg_id before (raises _Repeat), or the group is gone."""
    if client_msg_id is not None:
        found = _existing(group, sender, client_msg_id)
        if found is not None:
            raise _Repeat(found)
    raise NotFound("The group no longer exists.")


def _next_seq(group: ChatGroup, sender: User, client_msg_id: str | None, *, lift_pause: bool = False) -> int:
    """Bump and return the group's last_seq; the row lock orders concurrent senders.

    With a client_msg_id the same statement checks that the sender has not stored it yet, so that a repeat
    bumps nothing and costs no extra round trip on a first send; a repeat raises _Repeat. An in-group DOCTOR's
    message lifts the group's AI pause (an escalation waits for a doctor to write) in the same statement."""
    pause = ", ai_paused = FALSE" if lift_pause else ""
    sql = f"UPDATE {ChatGroup._meta.db_table} SET last_seq = last_seq + 1{pause} WHERE id = %s"
    params = [group.pk]
    if client_msg_id is not None:
        sql += (f" AND NOT EXISTS (SELECT 1 FROM {Message._meta.db_table}"
                " WHERE group_id = %s AND sender_id = %s AND client_msg_id = %s)")
        params += [group.pk, sender.pk, client_msg_id]
    with connection.cursor() as cursor:
        cursor.execute(sql + " RETURNING last_seq", params)
        row = cursor.fetchone()
    if row is None:
        _gone_or_repeat(group, sender, client_msg_id)
    return row[0]


def _bind(message: Message, group: ChatGroup, sender: User) -> Message:
    message.group = group
    message.sender = sender
    return message
