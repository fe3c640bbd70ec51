"""Review mode: the AI's answer is a draft for the group's doctors; nothing reaches the patient unapproved."""
import pytest
from django.utils import timezone

from ai_bridge.models import AIInteractionRecord, Status
from ai_bridge.services import ai_records_redispatch_stale
from chat.models import Message, MsgType
from chat.services import message_send
from groups.models import ChatGroup
from groups.services import group_update
from tests.support.api import assert_error
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def review_group(care_group):
    return group_update(group=care_group, ai_mode="review")


def _draft(group):
    return wait_for(lambda: AIInteractionRecord.objects.filter(group=group, status=Status.AWAITING_REVIEW).first())


def _url(record, verb):
    return f"/api/ai/interactions/{record.record_id}/{verb}"


def test_a_doctor_approves_an_edited_draft(ai_service, review_group, doctor, patient, client_for):
    question, _ = message_send(sender=patient, group=review_group, content="Can I run today?")
    record = _draft(review_group)
    answer = client_for(doctor).post(_url(record, "approve"), {"content": "Walk, do not run, for a week."},
                                     format="json")
    assert answer.status_code == 201
    reply = Message.objects.get(msg_type=MsgType.AI_REPLY)
    assert answer.json()["message_id"] == reply.message_id and reply.content == "Walk, do not run, for a week."
    assert reply.reply_to == question and reply.from_role == "AI_ASSISTANT"
    record.refresh_from_db()
    assert record.status == Status.SUCCESS and record.reviewed_by == doctor and record.ai_message == reply
    again = client_for(doctor).post(_url(record, "approve"), {}, format="json")
    assert_error(again, 409, "CONFLICT")
    assert Message.objects.filter(msg_type=MsgType.AI_REPLY).count() == 1


def test_a_doctor_approves_the_draft_as_is(ai_service, review_group, doctor, patient, client_for):
    message_send(sender=patient, group=review_group, content="Is it normal?")
    record = _draft(review_group)
    assert client_for(doctor).post(_url(record, "approve"), {}, format="json").status_code == 201
    assert Message.objects.get(msg_type=MsgType.AI_REPLY).content == record.draft


def test_a_doctor_rejects_the_draft(ai_service, review_group, doctor, patient, client_for):
    message_send(sender=patient, group=review_group, content="Which antibiotic?")
    record = _draft(review_group)
    answer = client_for(doctor).post(_url(record, "reject"), {"reason": "needs an exam first"}, format="json")
    assert answer.status_code == 200 and answer.json()["status"] == "REJECTED"
    assert answer.json()["reviewed_by"] == doctor.user_id
    assert not Message.objects.filter(msg_type=MsgType.AI_REPLY).exists()
    assert_error(client_for(doctor).post(_url(record, "approve"), {}, format="json"), 409, "CONFLICT")


def test_only_an_in_group_doctor_reviews(ai_service, review_group, patient, staff, make_user, client_for):
    message_send(sender=patient, group=review_group, content="help")
    record = _draft(review_group)
    for caller in (patient, staff, make_user()):
        assert_error(client_for(caller).post(_url(record, "approve"), {}, format="json"), 403, "PERMISSION_DENIED")
        assert_error(client_for(caller).post(_url(record, "reject"), {}, format="json"), 403, "PERMISSION_DENIED")
    assert AIInteractionRecord.objects.get(pk=record.pk).status == Status.AWAITING_REVIEW


def test_a_draft_nobody_reviews_escalates(ai_service, review_group, patient, settings):
    message_send(sender=patient, group=review_group, content="are you there?")
    record = _draft(review_group)
    settings.AI_REVIEW_TIMEOUT = 60
    AIInteractionRecord.objects.filter(pk=record.pk).update(updated_at=timezone.now() - timezone.timedelta(seconds=61))
    assert ai_records_redispatch_stale() == 1
    record.refresh_from_db()
    assert record.status == Status.ESCALATED and "review" in record.error_message
    assert ChatGroup.objects.get(pk=review_group.pk).ai_paused
    assert Message.objects.filter(msg_type=MsgType.SYSTEM).count() == 1
    assert ai_records_redispatch_stale() == 0  # once


def test_approving_a_record_that_is_not_a_draft_is_a_conflict(ai_service, care_group, doctor, patient, client_for):
    message_send(sender=patient, group=care_group, content="hi")
    record = wait_for(lambda: AIInteractionRecord.objects.filter(status=Status.SUCCESS).first())
    assert_error(client_for(doctor).post(_url(record, "approve"), {}, format="json"), 409, "CONFLICT")
