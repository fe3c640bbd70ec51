"""Exports of a group for the chart: complete and in seq order, as JSON or a valid FHIR R4 Bundle; streamed, so that
100,000 messages export in constant memory; for in-group DOCTORs and staff only."""
import json
import re
import time
import tracemalloc

import httpx
import pytest
from django.core.management import call_command
from django.db import connection
from fhir.resources.R4B.bundle import Bundle

from ai_bridge.models import AIInteractionRecord
from chat.models import Message, MsgType
from chat.serializers import message_data
from chat.services import message_send
from groups.models import ChatGroup
from groups.services import group_create, member_add, read_mark
from records.exports import AI_PROVENANCE
from tests.support.api import access_token, assert_error
from tests.support.live import needs_real_services
from users.models import Role


@pytest.fixture
def record_group(doctor, patient, assistant):
    """A conversation with AI replies: patient, AI (answering), doctor, an image, patient, AI."""
    group = group_create(creator=doctor, group_name="Cardiology follow-up", ai_enabled=False,
                         members=[(patient, Role.PATIENT), (assistant, Role.AI_ASSISTANT)])
    for question, answer in (("My chest feels tight", "Please rest; a doctor will look at this."),
                             ("Is 140/90 high?", "It is raised; keep measuring twice a day.")):
        asked = message_send(sender=patient, group=group, content=question)[0]
        reply = message_send(sender=assistant, group=group, content=answer, msg_type=MsgType.AI_REPLY,
                             reply_to=asked, via="ai")[0]
        AIInteractionRecord.objects.create(group=group, user_message=asked, ai_message=reply, status="SUCCESS",
                                           attempts=1, request_body={"message": question},
                                           response_body={"reply": answer})
        if question.startswith("My"):
            message_send(sender=doctor, group=group, content="I will call you at 3 pm.")
            message_send(sender=patient, group=group, content="https://img.example.org/ecg.png",
                         msg_type=MsgType.IMAGE)
    read_mark(group=group, user=patient, seq=4)
    group.refresh_from_db()
    return group


def export(client, group, fmt=None):
    response = client.get(f"/api/group/{group.group_id}/export" + (f"?format={fmt}" if fmt else ""))
    assert response.status_code == 200, response.content if not response.streaming else ""
    assert response.streaming, "the export is streamed"
    return response, json.loads(b"".join(response.streaming_content))


# --- JSON ---------------------------------------------------------------------------------------------------


def test_json_export_is_complete_and_in_seq_order(record_group, doctor, patient, assistant, client_for):
    response, body = export(client_for(doctor), record_group)

    assert response["Content-Type"] == "application/json"
    assert f'filename="{record_group.group_id}.json.json"' in response["Content-Disposition"]
    assert list(body) == ["group", "members", "messages", "ai_records"]
    assert body["group"]["group_id"] == record_group.group_id and body["group"]["last_seq"] == 6
    assert "unread_count" not in body["group"]  # the exporter's own read state is no part of the record
    assert [(m["user_id"], m["user_role"], m["last_read_seq"]) for m in body["members"]] == [
        (doctor.user_id, "DOCTOR", 0), (patient.user_id, "PATIENT", 4), (assistant.user_id, "AI_ASSISTANT", 0)]
    stored = Message.objects.with_refs().filter(group=record_group).order_by("seq")
    assert body["messages"] == [message_data(m) for m in stored]
    assert [m["seq"] for m in body["messages"]] == [1, 2, 3, 4, 5, 6]
    assert [m["msg_type"] for m in body["messages"]] == ["TEXT", "AI_REPLY", "TEXT", "IMAGE", "TEXT", "AI_REPLY"]
    assert [(r["user_message_id"], r["ai_message_id"]) for r in body["ai_records"]] == [
        (body["messages"][0]["message_id"], body["messages"][1]["message_id"]),
        (body["messages"][4]["message_id"], body["messages"][5]["message_id"])]
    assert "request_body" not in body["ai_records"][0]  # a doctor's export: the bodies are staff's


def test_staffs_export_carries_the_ai_bodies(record_group, staff, client_for):
    _, body = export(client_for(staff), record_group, "json")

    assert body["ai_records"][0]["request_body"] == {"message": "My chest feels tight"}


def test_an_empty_group_exports_as_valid_json(doctor, client_for):
    group = group_create(creator=doctor, group_name="Quiet", ai_enabled=False)

    _, body = export(client_for(doctor), group)

    assert body["messages"] == [] and body["ai_records"] == [] and len(body["members"]) == 1


def test_group_export_command_writes_the_same_json(record_group, doctor, client_for, tmp_path):
    out = tmp_path / "export.json"
    call_command("group_export", record_group.group_id, "--format", "json", "--output", str(out))

    _, by_api = export(client_for(doctor), record_group)
    assert json.loads(out.read_text()) == by_api


# --- FHIR ---------------------------------------------------------------------------------------------------


def test_fhir_export_is_a_valid_r4_bundle_of_communications_in_order(record_group, doctor, patient, assistant,
                                                                     client_for):
    response, body = export(client_for(doctor), record_group, "fhir")

    bundle = Bundle.model_validate(body)  # fhir.resources refuses anything R4(B) does not allow
    assert response["Content-Type"] == "application/fhir+json"
    assert bundle.type == "collection"
    resources = [entry.resource for entry in bundle.entry]
    communications = [r for r in resources if r.get_resource_type() == "Communication"]
    messages = list(Message.objects.filter(group=record_group).order_by("seq"))
    assert [c.identifier[0].value for c in communications] == [m.message_id for m in messages]  # one each, in order
    assert [c.payload[0].contentString or c.payload[0].contentAttachment.url for c in communications] == [
        m.content for m in messages]
    assert all(c.status == "completed" for c in communications)
    assert [c.sent.isoformat().replace("+00:00", "Z") for c in communications] == [
        message_data(m)["created_at"] for m in messages]

    by_reference = {f"{r.get_resource_type()}/{r.id}": r for r in resources}
    for communication, message in zip(communications, messages):
        sender = by_reference[communication.sender.reference]  # every reference resolves inside the bundle
        assert sender.identifier[0].value == message.sender.user_id
        assert {by_reference[r.reference].identifier[0].value for r in communication.recipient} == \
            {doctor.user_id, patient.user_id, assistant.user_id} - {message.sender.user_id}
    assert by_reference[communications[0].sender.reference].get_resource_type() == "Patient"
    assert by_reference[communications[2].sender.reference].get_resource_type() == "Practitioner"

    ai_reply = communications[1]
    assert by_reference[ai_reply.sender.reference].get_resource_type() == "Device"
    assert [r.reference for r in ai_reply.inResponseTo] == [f"Communication/{communications[0].id}"]
    [provenance] = ai_reply.extension
    assert provenance.url == AI_PROVENANCE
    parts = {part.url: part for part in provenance.extension}
    record = AIInteractionRecord.objects.get(ai_message=messages[1])
    assert parts["record"].valueString == record.record_id
    assert parts["assistant"].valueReference.reference == ai_reply.sender.reference
    assert communications[0].inResponseTo is None and communications[0].extension is None


def test_fhir_references_resolve_for_a_sender_who_left(record_group, doctor, patient, client_for):
    from groups.services import member_remove

    member_remove(group=record_group, user=patient)

    _, body = export(client_for(doctor), record_group, "fhir")

    bundle = Bundle.model_validate(body)
    ids = {f"{e.resource.get_resource_type()}/{e.resource.id}" for e in bundle.entry}
    senders = {e.resource.sender.reference for e in bundle.entry if e.resource.get_resource_type() == "Communication"}
    assert senders <= ids


def test_group_export_command_writes_a_fhir_bundle(record_group, tmp_path):
    out = tmp_path / "bundle.json"

    call_command("group_export", record_group.group_id, "--format", "fhir", "--output", str(out))

    bundle = Bundle.model_validate_json(out.read_text())
    assert sum(e.resource.get_resource_type() == "Communication" for e in bundle.entry) == 6


# --- who may export ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who,status,code", [("patient", 403, "PERMISSION_DENIED"),
                                             ("assistant", 403, "PERMISSION_DENIED"),
                                             ("outsider", 403, "NOT_GROUP_MEMBER")])
def test_patients_and_others_may_not_export(record_group, client_for, request, who, status, code):
    for fmt in ("json", "fhir"):
        assert_error(client_for(request.getfixturevalue(who)).get(
            f"/api/group/{record_group.group_id}/export?format={fmt}"), status, code)


def test_bad_format_unknown_group_and_anonymous_are_refused(record_group, doctor, client_for):
    assert_error(client_for(doctor).get(f"/api/group/{record_group.group_id}/export?format=xml"), 400,
                 "VALIDATION_ERROR")
    assert_error(client_for(doctor).get("/api/group/group_nosuch/export"), 404, "NOT_FOUND")
    assert_error(client_for().get(f"/api/group/{record_group.group_id}/export"), 401, "NOT_AUTHENTICATED")


def test_the_schema_documents_the_records_calls(client):
    paths = client.get("/api/schema?format=json").json()["paths"]

    assert "get" in paths["/api/group/{group_id}/export"]
    assert "post" in paths["/api/group/{group_id}/read"]
    assert "get" in paths["/api/audit"]


# --- 100,000 messages in constant memory --------------------------------------------------------------------------

BIG = 100_000
MEMORY_BOUND = 16 * 1024 * 1024  # bytes the export may hold at once; the whole JSON is over 30 MB


def bulk_messages(group, sender, count):
    """`count` messages stored at once (not through the send path: its cost is not what is measured here)."""
    padding = "x" * 200
    for start in range(0, count, 5000):
        Message.objects.bulk_create([
            Message(group=group, seq=seq, sender=sender, from_role=Role.DOCTOR, content=f"note {seq} {padding}")
            for seq in range(start + 1, min(count, start + 5000) + 1)])
    ChatGroup.objects.filter(pk=group.pk).update(last_seq=count)


def consume(chunks) -> tuple[int, int]:
    """Bytes streamed and messages seen, checking seq order as they pass (nothing is kept)."""
    size, expected = 0, 1
    for chunk in chunks:
        size += len(chunk)
        for seq in re.findall(rb'"seq":(\d+)', chunk):
            assert int(seq) == expected, f"seq {seq} where {expected} was due"
            expected += 1
    return size, expected - 1


@pytest.mark.timeout(600)
def test_an_export_of_100000_messages_stays_under_a_memory_bound(doctor, client_for):
    group = group_create(creator=doctor, group_name="Long stay", ai_enabled=False)
    bulk_messages(group, doctor, BIG)
    client = client_for(doctor)

    tracemalloc.start()
    try:
        started = time.perf_counter()
        response = client.get(f"/api/group/{group.group_id}/export?format=json")
        size, seen = consume(response.streaming_content)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    print(f"\nexport of {BIG} messages on {connection.vendor}: {size / 1e6:.1f} MB streamed in {elapsed:.1f} s "
          f"(traced), peak Python memory {peak / 1e6:.1f} MB")
    assert seen == BIG
    assert size > 2 * MEMORY_BOUND
    assert peak < MEMORY_BOUND, f"peak {peak / 1e6:.1f} MB"


def vm(pid: int, field: str) -> int:
    """A process's memory figure from /proc, in bytes (VmRSS: now; VmHWM: the peak so far)."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@needs_real_services()
@pytest.mark.timeout(600)
def test_daphne_streams_an_export_of_100000_messages_in_constant_memory(start_server, make_user):
    """Django's ASGI handler would read a sync iterator whole before sending: the export hands it chunks instead."""
    doctor, patient = make_user(Role.DOCTOR), make_user(Role.PATIENT)
    group = group_create(creator=doctor, group_name="Long stay", ai_enabled=False)
    member_add(group=group, user=patient, user_role=Role.PATIENT)
    bulk_messages(group, doctor, BIG)
    server = start_server("export")
    pid = server.proc.pid
    headers = {"Authorization": f"Bearer {access_token(doctor)}"}
    httpx.get(f"{server.url}/api/group/{group.group_id}", headers=headers, timeout=10)  # warm the process up
    before = vm(pid, "VmRSS")

    started, first_byte = time.perf_counter(), None
    with httpx.stream("GET", f"{server.url}/api/group/{group.group_id}/export?format=fhir", headers=headers,
                      timeout=120) as response:
        assert response.status_code == 200

        def chunks():
            nonlocal first_byte
            for chunk in response.iter_bytes():
                first_byte = first_byte or time.perf_counter() - started
                yield chunk

        size = sum(len(chunk) for chunk in chunks())
    elapsed = time.perf_counter() - started
    growth = vm(pid, "VmHWM") - before

    print(f"\ndaphne: FHIR export of {BIG} messages, {size / 1e6:.1f} MB in {elapsed:.1f} s, first byte after "
          f"{first_byte:.2f} s; server resident memory {before / 1e6:.0f} MB before, peak growth {growth / 1e6:.1f} MB")
    assert size > 40 * 1024 * 1024
    assert first_byte < elapsed / 2, "the first bytes left long before the last: streamed, not buffered"
    assert growth < 40 * 1024 * 1024, f"the server grew by {growth / 1e6:.1f} MB"
