"""Exports of a group for the chart: the contract's JSON, or a FHIR R4 Bundle of Communications.

Both are produced as chunks of text, each from one batch of rows read with a database cursor, so that a group of any
size exports in constant memory; the API streams them and `manage.py group_export` writes them to a file."""
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from itertools import chain, islice

from django.conf import settings
from django.db.models import OuterRef, Subquery

from ai_bridge.models import AIInteractionRecord
from ai_bridge.serializers import RecordDetailSerializer, RecordSerializer
from chat.models import Message, MsgType
from chat.serializers import message_data
from groups.models import ChatGroup, GroupMember
from groups.serializers import GroupSerializer, MemberSerializer
from imserver.audit import audit
from users.models import Role

FORMATS = ("json", "fhir")
CONTENT_TYPES = {"json": "application/json", "fhir": "application/fhir+json"}
# Identifier systems and the extension of this server's resources.
SYSTEM = "urn:imserver"
AI_PROVENANCE = f"{SYSTEM}:StructureDefinition:ai-provenance"
# The FHIR resource a participant is, by role.
RESOURCE_TYPES = {Role.DOCTOR: "Practitioner", Role.PATIENT: "Patient", Role.AI_ASSISTANT: "Device"}


def group_export(*, group: ChatGroup, fmt: str, with_ai_bodies: bool = False, via: str = "api") -> Iterator[str]:
    """Write the export's audit event and return its chunks (`fmt` "json" or "fhir")."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}.")
    audit(action="group.export", target=group.group_id,
          details={"format": fmt, "last_seq": group.last_seq, "ai_bodies": with_ai_bodies, "via": via})
    return _json_chunks(group, with_ai_bodies) if fmt == "json" else _fhir_chunks(group)


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _batches(rows, size: int):
    rows = iter(rows)
    while batch := list(islice(rows, size)):
        yield batch


def _members(group: ChatGroup) -> list[GroupMember]:
    return list(GroupMember.objects.filter(group=group).select_related("user").order_by("id"))


def _messages(group: ChatGroup):
    """The group's messages in seq order, read in batches; the replied-to message without its content."""
    rows = (Message.objects.filter(group=group).select_related("sender", "reply_to").defer("reply_to__content")
            .annotate(provenance_record=Subquery(AIInteractionRecord.objects.filter(ai_message=OuterRef("pk"))
                                            .values("record_id")[:1]))
            .order_by("seq").iterator(chunk_size=settings.IM_EXPORT_CHUNK_SIZE))
    for message in rows:
        message.group = group  # read once, not joined to every row
        yield message


def _array(items: Iterator[str]) -> Iterator[str]:
    """The items as the chunks of a JSON array's body, one chunk per batch."""
    for index, batch in enumerate(_batches(items, settings.IM_EXPORT_CHUNK_SIZE)):
        yield ("," if index else "") + ",".join(batch)


def _json_chunks(group: ChatGroup, with_ai_bodies: bool) -> Iterator[str]:
    group_data = {key: value for key, value in GroupSerializer(group).data.items()
                  if key not in ("last_read_seq", "unread_count")}  # the exporter's own read state is no record
    head = {"group": group_data, "members": MemberSerializer(_members(group), many=True).data}
    yield _dumps(head)[:-1] + ',"messages":['
    yield from _array(_dumps(message_data(message)) for message in _messages(group))
    yield '],"ai_records":['
    serializer = RecordDetailSerializer if with_ai_bodies else RecordSerializer
    records = (AIInteractionRecord.objects.filter(group=group).select_related("group", "user_message", "ai_message")
               .defer("user_message__content", "ai_message__content")  # named by id only: nothing to decrypt
               .order_by("id").iterator(chunk_size=settings.IM_EXPORT_CHUNK_SIZE))
    yield from _array(_dumps(data) for batch in _batches(records, settings.IM_EXPORT_CHUNK_SIZE)
                      for data in serializer(batch, many=True).data)
    yield "]}"


# --- FHIR R4 -----------------------------------------------------------------------------------------------

def fhir_id(public_id: str) -> str:
    """A public id as a FHIR id ([A-Za-z0-9-.]{1,64}: no underscore)."""
    return public_id.replace("_", "-")


def _reference(user_id: str, username: str, role: str) -> dict:
    return {"reference": f"{RESOURCE_TYPES[role]}/{fhir_id(user_id)}", "display": username}


def _participant(user_id: str, username: str, role: str) -> dict:
    resource = {"resourceType": RESOURCE_TYPES[role], "id": fhir_id(user_id),
                "identifier": [{"system": f"{SYSTEM}:user", "value": user_id}]}
    if role == Role.AI_ASSISTANT:
        resource["deviceName"] = [{"name": username, "type": "user-friendly-name"}]
    else:
        resource["name"] = [{"text": username}]
    return resource


def _communication(message: Message, recipients: list[tuple[str, dict]]) -> dict:
    sender = message.sender
    resource = {
        "resourceType": "Communication",
        "id": fhir_id(message.message_id),
        "identifier": [{"system": f"{SYSTEM}:message", "value": message.message_id}],
        "status": "completed",
        "sent": _iso(message.created_at),
        "sender": _reference(sender.user_id, sender.username, message.from_role),
        "payload": [{"contentAttachment": {"url": message.content}} if message.msg_type == MsgType.IMAGE
                    else {"contentString": message.content}],
    }
    to = [reference for user_id, reference in recipients if user_id != sender.user_id]
    if to:
        resource["recipient"] = to
    if message.reply_to_id is not None:
        resource["inResponseTo"] = [{"reference": f"Communication/{fhir_id(message.reply_to.message_id)}"}]
    if message.msg_type == MsgType.AI_REPLY:
        provenance = [{"url": "assistant", "valueReference": resource["sender"]}]
        if message.provenance_record:
            provenance.append({"url": "record", "valueString": message.provenance_record})
        resource["extension"] = [{"url": AI_PROVENANCE, "extension": provenance}]
    return resource


def _fhir_chunks(group: ChatGroup) -> Iterator[str]:
    members = _members(group)
    recipients = [(m.user.user_id, _reference(m.user.user_id, m.user.username, m.user_role)) for m in members]
    # Every participant once per resource type, so that each reference resolves inside the bundle: the members as
    # they are now, and senders as they were (one who left, or whose in-group role changed).
    participants = {(m.user.user_id, RESOURCE_TYPES[m.user_role]): (m.user.user_id, m.user.username, m.user_role)
                    for m in members}
    for user_id, username, role in (Message.objects.filter(group=group).order_by()
                                    .values_list("sender__user_id", "sender__username", "from_role").distinct()):
        participants.setdefault((user_id, RESOURCE_TYPES[role]), (user_id, username, role))
    bundle = {"resourceType": "Bundle", "identifier": {"system": f"{SYSTEM}:export", "value": group.group_id},
              "type": "collection", "timestamp": _iso(datetime.now(timezone.utc))}
    yield _dumps(bundle)[:-1] + ',"entry":['
    entries = chain((_dumps({"resource": _participant(*participant)}) for participant in participants.values()),
                    (_dumps({"resource": _communication(message, recipients)}) for message in _messages(group)))
    yield from _array(entries)
    yield "]}"
