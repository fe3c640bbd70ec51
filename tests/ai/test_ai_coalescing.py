"""A burst of patient messages gets one AI call, answering the last, with the others in its history."""
import pytest

from ai_bridge.models import AIInteractionRecord, Status
from chat.models import Message, MsgType
from chat.services import message_send
from tests.support.waiting import assert_stays, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_burst_gets_one_answer_to_its_last_message(ai_service, care_group, patient, settings):
    settings.AI_COALESCE_SECONDS = 1.0
    sent = [message_send(sender=patient, group=care_group, content=f"part {i}")[0] for i in range(10)]
    reply = wait_for(lambda: Message.objects.filter(group=care_group, msg_type=MsgType.AI_REPLY).first())
    assert_stays(lambda: Message.objects.filter(group=care_group, msg_type=MsgType.AI_REPLY).count() == 1,
                 what="a single AI reply")
    assert Message.objects.filter(group=care_group, msg_type=MsgType.AI_REPLY).count() == 1
    assert reply.reply_to == sent[-1] and reply.content.startswith("Reference AI reply to: part 9 (history 9)")
    assert ai_service.calls == 1
    answered = AIInteractionRecord.objects.get(user_message=sent[-1])
    assert answered.status == Status.SUCCESS
    coalesced = AIInteractionRecord.objects.filter(group=care_group, status=Status.COALESCED)
    assert coalesced.count() == 9 and set(coalesced.values_list("answered_by", flat=True)) == {answered.pk}
    assert [h["content"] for h in answered.request_body["history"]] == [f"part {i}" for i in range(9)]


def test_a_message_after_the_answer_starts_a_new_round(ai_service, care_group, patient, settings):
    settings.AI_COALESCE_SECONDS = 0.3
    message_send(sender=patient, group=care_group, content="first")
    wait_for(lambda: Message.objects.filter(group=care_group, msg_type=MsgType.AI_REPLY).exists())
    later, _ = message_send(sender=patient, group=care_group, content="second")
    reply = wait_for(lambda: Message.objects.filter(group=care_group, msg_type=MsgType.AI_REPLY,
                                                    reply_to=later).first())
    assert reply.content.startswith("Reference AI reply to: second")
    assert ai_service.calls == 2
    assert not AIInteractionRecord.objects.filter(status=Status.COALESCED).exists()


def test_a_message_while_the_ai_answers_the_burst_gets_its_own_answer(ai_service, care_group, patient, settings):
    settings.AI_COALESCE_SECONDS = 0.2
    ai_service.latency = 1.0
    first, _ = message_send(sender=patient, group=care_group, content="one")
    wait_for(lambda: AIInteractionRecord.objects.filter(user_message=first, attempts=1).exists())
    second, _ = message_send(sender=patient, group=care_group, content="two")
    wait_for(lambda: Message.objects.filter(group=care_group, msg_type=MsgType.AI_REPLY).count() == 2, timeout=15)
    assert set(Message.objects.filter(msg_type=MsgType.AI_REPLY).values_list("reply_to", flat=True)) == {
        first.pk, second.pk}
