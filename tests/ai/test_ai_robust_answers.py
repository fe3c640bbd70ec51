"""Whatever the AI service sends back, the record ends settled with bounded storage and a bounded number of
calls: NUL characters, a 1 MB answer with a 5 MB extra field, an answer trickling a byte a second."""
import json
import threading

import pytest
from django.db import connection

from ai_bridge import tasks
from ai_bridge.models import AIInteractionRecord, Status
from chat.models import Message, MsgType
from chat.services import message_send
from groups.models import GroupMember
from groups.services import group_create, member_add
from tests.support.waiting import wait_for
from users.models import Role

pytestmark = pytest.mark.django_db(transaction=True)


def _settled(group, timeout=20):
    return wait_for(lambda: AIInteractionRecord.objects.filter(group=group).exclude(status=Status.PROCESSING).first(),
                    timeout=timeout)


def _stored_size(record) -> int:
    return sum(len(json.dumps(value)) for value in (record.request_body, record.response_body)) + \
        len(record.error_message) + len(record.draft)


def test_nul_characters_are_removed_before_anything_is_stored(ai_service, care_group, patient):
    message_send(sender=patient, group=care_group, content="give me #nul please")
    record = _settled(care_group)
    assert record.status == Status.SUCCESS
    reply = Message.objects.get(msg_type=MsgType.AI_REPLY)
    assert "\x00" not in reply.content and "with NUL" in reply.content
    assert "\x00" not in json.dumps(record.response_body, ensure_ascii=False)


def test_a_huge_answer_fails_with_bounded_storage_and_one_call(ai_service, care_group, patient, settings):
    message_send(sender=patient, group=care_group, content="#huge")
    record = _settled(care_group)
    assert record.status == Status.FAILED and "larger than" in record.error_message and record.attempts == 1
    assert _stored_size(record) < 4 * settings.AI_RECORD_TEXT_MAX + 10_000
    assert ai_service.calls == 1


def test_a_large_answer_within_the_limit_is_cut_to_the_reply_limit(ai_service, care_group, patient, settings):
    settings.AI_MAX_RESPONSE_BYTES = 20_000_000
    message_send(sender=patient, group=care_group, content="#huge")
    record = _settled(care_group)
    assert record.status == Status.SUCCESS
    assert len(Message.objects.get(msg_type=MsgType.AI_REPLY).content) <= settings.AI_MAX_REPLY_CHARS
    assert record.response_body["truncated"] is True
    assert _stored_size(record) < 4 * settings.AI_RECORD_TEXT_MAX + 10_000


def test_a_trickling_answer_is_cut_at_the_attempts_deadline(ai_service, care_group, patient, settings):
    settings.AI_SERVICE_TIMEOUT = 1.5
    settings.AI_MAX_RETRIES = 1
    message_send(sender=patient, group=care_group, content="#trickle")
    record = _settled(care_group, timeout=15)
    assert record.status == Status.FAILED and "timed out" in record.error_message
    assert record.attempts == 2 and ai_service.calls == 2


def test_no_sweep_calls_a_record_more_than_the_total_limit(ai_service, care_group, patient, settings):
    settings.AI_MAX_ATTEMPTS_TOTAL = 2
    ai_service.error_rate = 1.0
    settings.AI_MAX_RETRIES = 10
    message_send(sender=patient, group=care_group, content="keep failing")
    record = _settled(care_group)
    assert record.status == Status.FAILED and record.attempts == 2
    AIInteractionRecord.objects.filter(pk=record.pk).update(status=Status.PROCESSING)  # as a racing redelivery
    assert tasks.step(record.record_id) is None
    assert AIInteractionRecord.objects.get(pk=record.pk).status == Status.FAILED
    assert ai_service.calls == 2


def test_two_first_replies_in_a_new_group_both_succeed(ai_service, doctor, make_user, settings):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent transactions need PostgreSQL")
    group = group_create(creator=doctor, group_name="Brand new")
    patients = [make_user(Role.PATIENT) for _ in range(2)]
    for p in patients:
        member_add(group=group, user=p, user_role=Role.PATIENT)
    settings.AI_TASKS_IN_PROCESS = False  # the two steps below run by hand, at the same moment
    settings.CELERY_BROKER_URL = "memory://"
    records = [AIInteractionRecord.objects.get(user_message=message_send(sender=p, group=group, content="hi")[0])
               for p in patients]
    barrier = threading.Barrier(2)

    def run(record):
        barrier.wait()
        try:
            tasks.step(record.record_id)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(r,)) for r in records]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status for r in AIInteractionRecord.objects.filter(group=group)] == [Status.SUCCESS] * 2
    assert GroupMember.objects.filter(group=group, user_role=Role.AI_ASSISTANT).count() == 1
