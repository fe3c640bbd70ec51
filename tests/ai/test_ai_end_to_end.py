"""The AI bridge with real processes: daphne, a Celery worker on Redis, the reference AI service."""
import asyncio

import pytest

from ai_bridge.models import AIInteractionRecord, Status
from chat.models import Message, MsgType
from tests.support.api import access_token
from tests.support.live import needs_real_services
from tests.support.waiting import ABSENCE_GRACE, assert_nothing_arrives, wait_for
from tests.support.wsclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]


def _client(user):
    return Client(user.username, user.user_id, access_token(user))


def test_patient_question_is_answered_live_and_doctor_is_not_forwarded(
        start_redis, start_ai_service, start_worker, start_server, care_group, patient, doctor):
    _, ai_url = start_ai_service("--latency", "0.2", "--jitter", "0")
    redis = start_redis()  # a broker of this test's own: no other run's worker takes its tasks
    env = {"AI_SERVICE_URL": ai_url, "AI_SERVICE_API_KEY": "e2e-ai-key", "REDIS_URL": redis.url,
           "CELERY_BROKER_URL": redis.url}
    start_worker(**env)
    server = start_server(**env)

    async def scenario():
        p, d = _client(patient), _client(doctor)
        await p.connect(server.ws_url)
        await d.connect(server.ws_url)
        await d.send({"type": "send_message", "group_id": care_group.group_id, "content": "Doctor here"})
        await d.wait_for(lambda f: f["type"] == "message_ack")  # before the question: it does not overtake it
        await p.send({"type": "send_message", "group_id": care_group.group_id, "content": "I feel dizzy"})
        ack = await p.wait_for(lambda f: f["type"] == "message_ack")
        question_id = ack["message"]["message_id"]
        for client in (p, d):
            thinking = await client.wait_for(lambda f: f["type"] == "ai_status")
            assert thinking == {"type": "ai_status", "group_id": care_group.group_id,
                                "user_message_id": question_id, "status": "thinking"}
            reply = await client.wait_for(lambda f: f["type"] == "ai_reply", timeout=15)
            assert reply["reply_to"] == question_id and reply["from_role"] == "AI_ASSISTANT"
            assert reply["content"].startswith("Reference AI reply to: I feel dizzy")
        await assert_nothing_arrives(p, d, match=lambda f: f["type"] == "ai_reply", grace=ABSENCE_GRACE)
        assert sum(f["type"] == "ai_reply" for f in p.frames) == 1
        await p.close()
        await d.close()

    asyncio.run(scenario())
    assert AIInteractionRecord.objects.get().status == Status.SUCCESS
    assert Message.objects.filter(msg_type=MsgType.AI_REPLY).count() == 1


def test_a_worker_killed_mid_call_loses_no_reply_and_posts_it_once(
        start_redis, start_ai_service, start_worker, start_server, care_group, patient):
    _, ai_url = start_ai_service("--latency", "3", "--jitter", "0")
    redis = start_redis()
    env = {"AI_SERVICE_URL": ai_url, "AI_SERVICE_API_KEY": "e2e-ai-key", "CELERY_VISIBILITY_TIMEOUT": "4",
           "REDIS_URL": redis.url, "CELERY_BROKER_URL": redis.url,
           "CELERY_RESTORE_INTERVAL": "1"}
    doomed = start_worker("doomed", **env)
    server = start_server(**env)
    import httpx

    sent = httpx.post(f"{server.url}/api/message/send", json={"group_id": care_group.group_id, "content": "ouch"},
                      headers={"Authorization": f"Bearer {access_token(patient)}",
                               "X-Request-ID": "trace-worker-kill"}, timeout=10)
    assert sent.status_code == 201 and sent.headers["X-Request-ID"] == "trace-worker-kill"
    wait_for(lambda: AIInteractionRecord.objects.filter(attempts__gte=1).exists(), timeout=15)
    doomed.kill()  # mid-call: the AI service takes 3 s
    assert not Message.objects.filter(msg_type=MsgType.AI_REPLY).exists()
    survivor = start_worker("survivor", **env)
    record = wait_for(lambda: AIInteractionRecord.objects.filter(status=Status.SUCCESS).first(), timeout=40)
    # The request id of the HTTP send travelled with the task, into the worker that answered it.
    wait_for(lambda: "trace-worker-kill" in survivor.output(), timeout=10)
    assert Message.objects.filter(msg_type=MsgType.AI_REPLY).count() == 1
    assert record.ai_message.content.startswith("Reference AI reply to: ouch")


def test_an_embedded_server_stopped_mid_call_answers_the_patient_after_its_restart(
        start_ai_service, start_server, care_group, patient):
    """`make run`'s system has no broker and no Celery beat: its AI calls run on the server's own threads, so a
    server stopped mid-call takes the call with it, and the restarted server's own sweep dispatches it again."""
    import httpx

    _, ai_url = start_ai_service("--latency", "2", "--jitter", "0")
    env = {"AI_SERVICE_URL": ai_url, "AI_SERVICE_API_KEY": "e2e-ai-key", "CELERY_BROKER_URL": "",
           "AI_TASKS_IN_PROCESS": "true", "AI_STALE_AFTER": "5", "AI_SWEEP_INTERVAL": "1"}
    first = start_server("embedded-first", **env)
    sent = httpx.post(f"{first.url}/api/message/send", json={"group_id": care_group.group_id, "content": "ouch"},
                      headers={"Authorization": f"Bearer {access_token(patient)}"}, timeout=10)
    assert sent.status_code == 201
    wait_for(lambda: AIInteractionRecord.objects.filter(attempts__gte=1).exists(), timeout=15)
    first.kill()  # mid-call: the AI service takes 2 s
    assert AIInteractionRecord.objects.get().status == Status.PROCESSING

    start_server("embedded-second", **env)
    record = wait_for(lambda: AIInteractionRecord.objects.filter(status=Status.SUCCESS).first(), timeout=30)
    assert record.ai_message.content.startswith("Reference AI reply to: ouch")
    assert Message.objects.filter(msg_type=MsgType.AI_REPLY).count() == 1
