"""Retries, give-ups and idempotency of the AI task against the reference service misbehaving."""
import threading
import time

import pytest

from ai_bridge import services, tasks
from ai_bridge.models import AIInteractionRecord, Status
from chat.models import Message, MsgType
from chat.services import message_send
from tests.support.ai import record_undispatched
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def settled(group):
    return wait_for(lambda: AIInteractionRecord.objects.filter(group=group).exclude(status=Status.PROCESSING).first())


def test_server_errors_are_retried_then_the_record_fails(ai_service, care_group, patient, settings):
    settings.AI_MAX_RETRIES = 2
    ai_service.error_rate = 1.0
    message_send(sender=patient, group=care_group, content="help")
    record = settled(care_group)
    assert record.status == Status.FAILED
    assert record.attempts == 3
    assert "500" in record.error_message and "gave up after 3 attempts" in record.error_message
    assert not Message.objects.filter(msg_type=MsgType.AI_REPLY).exists()


def test_a_transient_failure_is_retried_into_success(ai_service, care_group, patient, settings):
    settings.AI_MAX_RETRIES = 5
    ai_service.fail_first = 2
    message_send(sender=patient, group=care_group, content="flaky")
    record = settled(care_group)
    assert record.status == Status.SUCCESS and record.attempts == 3
    assert Message.objects.filter(msg_type=MsgType.AI_REPLY).count() == 1


def test_a_malformed_answer_fails_at_once(ai_service, care_group, patient):
    ai_service.malformed_rate = 1.0
    message_send(sender=patient, group=care_group, content="hello")
    record = settled(care_group)
    assert record.status == Status.FAILED and record.attempts == 1
    assert "malformed" in record.error_message


def test_a_refused_key_fails_at_once_and_the_key_is_not_recorded(ai_service, care_group, patient, settings):
    settings.AI_SERVICE_API_KEY = "wrong-key"
    message_send(sender=patient, group=care_group, content="hello")
    record = settled(care_group)
    assert record.status == Status.FAILED and record.attempts == 1
    assert "401" in record.error_message
    assert "wrong-key" not in str(record.request_body) + str(record.response_body) + record.error_message


def test_a_timeout_is_retried_and_reported(ai_service, care_group, patient, settings):
    settings.AI_MAX_RETRIES = 1
    settings.AI_SERVICE_TIMEOUT = 0.2
    ai_service.latency = 1.0
    message_send(sender=patient, group=care_group, content="slow")
    record = settled(care_group)
    assert record.status == Status.FAILED and record.attempts == 2
    assert "timed out" in record.error_message


def test_an_unreachable_service_fails_with_a_clear_reason(ai_service, care_group, patient, settings):
    settings.AI_MAX_RETRIES = 1
    settings.AI_SERVICE_URL = "http://127.0.0.1:9/reply"
    message_send(sender=patient, group=care_group, content="anyone?")
    record = settled(care_group)
    assert record.status == Status.FAILED and "connection failed" in record.error_message


def test_a_task_run_twice_posts_one_reply(ai_service, care_group, patient):
    message_send(sender=patient, group=care_group, content="once please")
    record = settled(care_group)
    assert record.status == Status.SUCCESS
    tasks.ai_reply_generate.apply(args=[record.record_id])  # a redelivery after the reply was posted
    assert Message.objects.filter(msg_type=MsgType.AI_REPLY).count() == 1


def test_two_deliveries_racing_for_one_record_post_one_reply(ai_service, care_group, patient):
    ai_service.latency = 0.3
    message_send(sender=patient, group=care_group, content="race")
    record = AIInteractionRecord.objects.get(group=care_group)
    # The in-process worker already runs; two more deliveries of the same task race with it.
    threads = [threading.Thread(target=tasks.run_in_process, args=[record.record_id]) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: AIInteractionRecord.objects.filter(pk=record.pk, status=Status.SUCCESS).exists())
    assert Message.objects.filter(msg_type=MsgType.AI_REPLY).count() == 1
    assert AIInteractionRecord.objects.get(pk=record.pk).ai_message.content.startswith("Reference AI reply to: race")


def test_stale_processing_records_are_dispatched_again(ai_service, care_group, patient, settings):
    ai_service.error_rate = 1.0
    settings.AI_MAX_RETRIES = 0
    message_send(sender=patient, group=care_group, content="lost at commit")
    record = settled(care_group)
    # As if the broker had been down at commit: the record sits in PROCESSING.
    AIInteractionRecord.objects.filter(pk=record.pk).update(status=Status.PROCESSING, attempts=0)
    ai_service.error_rate = 0.0
    settings.AI_STALE_AFTER = 0
    from django.core.management import call_command

    call_command("ai_sweep")
    wait_for(lambda: AIInteractionRecord.objects.filter(pk=record.pk, status=Status.SUCCESS).exists())
    assert Message.objects.filter(msg_type=MsgType.AI_REPLY).count() == 1


@pytest.mark.parametrize("window", [0, 0.05], ids=["no window", "a burst window"])
def test_two_deliveries_starting_one_record_count_one_attempt(ai_service, care_group, patient, settings, window):
    settings.AI_COALESCE_SECONDS = window
    record = record_undispatched(group=care_group, sender=patient, content="start me once")
    time.sleep(window * 2)  # the burst window is over
    first, second = (AIInteractionRecord.objects.select_related("group", "user_message__sender").get(pk=record.pk)
                     for _ in range(2))  # two deliveries of its task, both read before either starts
    assert services.ai_record_start(record=first)["message"] == "start me once"
    assert services.ai_record_start(record=second) is None  # started by the other delivery: no second call
    stored = AIInteractionRecord.objects.get(pk=record.pk)
    assert stored.attempts == 1 and stored.status == Status.PROCESSING
