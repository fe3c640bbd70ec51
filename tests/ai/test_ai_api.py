"""The AI interaction API and admin: who sees which records, and the service probe."""
import pytest

from ai_bridge.models import AIInteractionRecord, Status
from chat.models import Message, MsgType
from chat.services import message_send
from tests.support.api import assert_error
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def answered(ai_service, care_group, patient):
    """A patient question the AI has answered."""
    question, _ = message_send(sender=patient, group=care_group, content="Can I run?")
    return wait_for(lambda: AIInteractionRecord.objects.filter(user_message=question, status=Status.SUCCESS).first())


def test_doctor_lists_and_reads_the_groups_records(answered, care_group, doctor, client_for):
    listed = client_for(doctor).get(f"/api/ai/interactions?group_id={care_group.group_id}&status=SUCCESS")
    assert listed.status_code == 200
    body = listed.json()
    assert body["total"] == 1 and body["page"] == 1
    item = body["interactions"][0]
    assert item["record_id"] == answered.record_id and item["status"] == "SUCCESS"
    assert item["user_message_id"] == answered.user_message.message_id
    assert item["ai_message_id"] == answered.ai_message.message_id
    assert item["attempts"] == 1 and item["duration_ms"] is not None
    assert "request_body" not in item
    detail = client_for(doctor).get(f"/api/ai/interactions/{answered.record_id}")
    assert detail.status_code == 200 and "request_body" not in detail.json()
    none_failed = client_for(doctor).get(f"/api/ai/interactions?group_id={care_group.group_id}&status=FAILED")
    assert none_failed.json()["total"] == 0


def test_staff_see_the_bodies_but_never_the_key(answered, staff, client_for, settings):
    detail = client_for(staff).get(f"/api/ai/interactions/{answered.record_id}")
    assert detail.status_code == 200
    assert detail.json()["request_body"]["message"] == "Can I run?"
    assert detail.json()["response_body"]["reply"].startswith("Reference AI reply to: Can I run?")
    assert settings.AI_SERVICE_API_KEY not in detail.content.decode()


def test_patients_and_outsiders_are_refused(answered, care_group, patient, outsider, client_for):
    assert_error(client_for(patient).get(f"/api/ai/interactions?group_id={care_group.group_id}"), 403,
                 "PERMISSION_DENIED")
    assert_error(client_for(patient).get(f"/api/ai/interactions/{answered.record_id}"), 403, "PERMISSION_DENIED")
    assert_error(client_for(outsider).get(f"/api/ai/interactions/{answered.record_id}"), 403, "NOT_GROUP_MEMBER")
    # Without a group filter a patient simply has no records to see.
    assert client_for(patient).get("/api/ai/interactions").json()["total"] == 0


def test_bad_filters_and_unknown_records(db, doctor, client_for):
    assert_error(client_for(doctor).get("/api/ai/interactions?status=DONE"), 400, "VALIDATION_ERROR")
    assert_error(client_for(doctor).get("/api/ai/interactions?page_size=101"), 400, "VALIDATION_ERROR")
    assert_error(client_for(doctor).get("/api/ai/interactions/air_nope"), 404, "NOT_FOUND")
    assert_error(client_for(doctor).get("/api/ai/interactions?group_id=group_nope"), 404, "NOT_FOUND")


def test_probe_reports_the_services_answer(ai_service, staff, client_for):
    answer = client_for(staff).post("/api/ai/test", {"message": "ping?"}, format="json")
    assert answer.status_code == 200
    body = answer.json()
    assert body["ok"] is True and body["status_code"] == 200 and body["error"] is None
    assert body["reply"].startswith("Reference AI reply to: ping?") and body["duration_ms"] >= 0


def test_probe_reports_a_refusal_and_an_unreachable_service(ai_service, staff, client_for, settings):
    settings.AI_SERVICE_API_KEY = "wrong"
    refused = client_for(staff).post("/api/ai/test", {}, format="json").json()
    assert refused["ok"] is False and refused["status_code"] == 401
    settings.AI_SERVICE_URL = "http://127.0.0.1:9/reply"
    assert_error(client_for(staff).post("/api/ai/test", {}, format="json"), 502, "AI_SERVICE_UNAVAILABLE")


def test_probe_is_for_staff_only(db, doctor, client_for):
    assert_error(client_for(doctor).post("/api/ai/test", {}, format="json"), 403, "PERMISSION_DENIED")


def test_admin_lists_records_and_retries_failed_ones(ai_service, care_group, patient, admin_browser, settings):
    settings.AI_MAX_RETRIES = 0
    ai_service.error_rate = 1.0
    message_send(sender=patient, group=care_group, content="retry me")
    record = wait_for(lambda: AIInteractionRecord.objects.filter(status=Status.FAILED).first())
    page = admin_browser.get("/admin/ai_bridge/aiinteractionrecord/?status__exact=FAILED")
    assert page.status_code == 200 and record.record_id in page.content.decode()
    assert admin_browser.get(f"/admin/ai_bridge/aiinteractionrecord/{record.pk}/change/").status_code == 200
    ai_service.error_rate = 0.0
    done = admin_browser.post("/admin/ai_bridge/aiinteractionrecord/",
                              {"action": "retry_failed", "_selected_action": [record.pk]})
    assert done.status_code == 302
    wait_for(lambda: AIInteractionRecord.objects.filter(pk=record.pk, status=Status.SUCCESS).exists())
    assert Message.objects.filter(msg_type=MsgType.AI_REPLY).count() == 1
