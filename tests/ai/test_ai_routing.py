"""Who is forwarded to the AI, and what comes back into the group."""
import pytest

from ai_bridge.models import AIInteractionRecord, Status
from chat.models import Message, MsgType
from chat.services import message_send
from groups.services import group_update
from tests.support.waiting import assert_stays, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_patient_message_gets_one_ai_reply_in_the_group(ai_service, care_group, patient, assistant):
    question, _ = message_send(sender=patient, group=care_group, content="My head hurts")
    reply = wait_for(lambda: Message.objects.filter(group=care_group, msg_type=MsgType.AI_REPLY).first())
    assert reply.content == "Reference AI reply to: My head hurts (history 0)"
    assert reply.sender == assistant and reply.reply_to == question and reply.from_role == "AI_ASSISTANT"
    record = wait_for(lambda: AIInteractionRecord.objects.filter(status=Status.SUCCESS).first())
    assert record.user_message == question and record.ai_message == reply and record.attempts == 1
    assert record.request_body["message"] == "My head hurts"
    assert "test-ai-key" not in str(record.request_body) + str(record.response_body)


def test_doctor_and_assistant_messages_are_not_forwarded(ai_service, care_group, doctor, assistant):
    message_send(sender=doctor, group=care_group, content="Take rest")
    message_send(sender=assistant, group=care_group, content="noted", msg_type=MsgType.AI_REPLY)
    assert_stays(lambda: not AIInteractionRecord.objects.exists(), what="no AI record")
    assert Message.objects.filter(group=care_group).count() == 2


def test_doctor_takeover_keeps_the_ai_silent_until_switched_back(ai_service, care_group, patient):
    group_update(group=care_group, ai_enabled=False)
    message_send(sender=patient, group=care_group, content="Are you there?")
    assert_stays(lambda: not AIInteractionRecord.objects.exists(), what="no AI record")
    group_update(group=care_group, ai_enabled=True)
    message_send(sender=patient, group=care_group, content="And now?")
    reply = wait_for(lambda: Message.objects.filter(msg_type=MsgType.AI_REPLY).first())
    assert "And now?" in reply.content
    assert AIInteractionRecord.objects.count() == 1


def test_history_carries_earlier_messages_with_roles(ai_service, care_group, patient, doctor):
    message_send(sender=doctor, group=care_group, content="Hello, how are you?")
    message_send(sender=patient, group=care_group, content="Tired")
    first = wait_for(lambda: AIInteractionRecord.objects.filter(status=Status.SUCCESS).first())
    message_send(sender=patient, group=care_group, content="Still tired")
    second = wait_for(lambda: AIInteractionRecord.objects.filter(status=Status.SUCCESS).exclude(pk=first.pk).first())
    history = second.request_body["history"]
    assert [h["role"] for h in history] == ["user", "user", "assistant"]
    assert history[-1]["content"].startswith("Reference AI reply to: Tired")


def test_group_without_assistant_gets_the_default_one(ai_service, make_user, doctor):
    from groups.services import group_create, member_add
    from users.models import Role

    lonely = make_user(Role.PATIENT)
    group = group_create(creator=doctor, group_name="No assistant yet")
    member_add(group=group, user=lonely, user_role=Role.PATIENT)
    message_send(sender=lonely, group=group, content="hello?")
    reply = wait_for(lambda: Message.objects.filter(group=group, msg_type=MsgType.AI_REPLY).first())
    assert reply.sender.username == "ai_assistant"
    assert group.memberships.filter(user=reply.sender, user_role=Role.AI_ASSISTANT).exists()
