"""An AI service that answers garbage, 500s, too slowly or not at all: sends stay 201, records end FAILED with the
reason, members get `ai_status: failed`, no AI reply is posted, and the doctors' messages flow as usual."""
import asyncio

import httpx
import pytest

from ai_bridge.models import AIInteractionRecord, Status
from chat.models import Message, MsgType
from tests.support.api import access_token
from tests.support.live import assert_all_received, assert_stored_once, free_port, needs_real_services
from tests.support.waiting import ABSENCE_GRACE, assert_nothing_arrives
from tests.support.wsclient import Client

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]

QUESTIONS = 3
AI_ENV = {"AI_SERVICE_API_KEY": "e2e-ai-key", "AI_SERVICE_TIMEOUT": "1", "AI_MAX_RETRIES": "1",
          "AI_RETRY_BACKOFF": "0.1", "AI_RETRY_BACKOFF_MAX": "0.2", "IM_SEND_RATE": "10000/min",
          "AI_COALESCE_SECONDS": "0"}  # each question its own record (bursts are test_ai_coalescing's)

# service arguments (None: nothing listens at the URL), the reason the record ends with, and its attempts:
# garbage is not retried, the others are retried AI_MAX_RETRIES times.
FAULTS = {
    "garbage": (["--malformed-rate", "1"], "malformed answer from the AI service", 1),
    "errors": (["--error-rate", "1"], "service answered 500; gave up after 2 attempts", 2),
    "too-slow": (["--latency", "3"], "timed out after 1 s; gave up after 2 attempts", 2),
    "not-there": (None, "connection failed: ConnectError; gave up after 2 attempts", 2),
}


def _client(user):
    return Client(user.username, user.user_id, access_token(user))


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failing_ai_service_never_holds_up_the_conversation(
        fault, start_redis, start_ai_service, start_worker, start_server, care_group, patient, doctor):
    service_args, reason, attempts = FAULTS[fault]
    if service_args is None:
        ai_url = f"http://127.0.0.1:{free_port()}/reply"
    else:
        _, ai_url = start_ai_service(*service_args, "--jitter", "0")
    redis = start_redis()  # a broker of this test's own: no other worker takes its tasks
    env = {**AI_ENV, "AI_SERVICE_URL": ai_url, "REDIS_URL": redis.url, "CELERY_BROKER_URL": redis.url}
    start_worker(**env)
    server = start_server(**env)
    told: list[dict] = []

    async def scenario():
        p, d = _client(patient), _client(doctor)
        await p.connect(server.ws_url)
        await d.connect(server.ws_url)
        questions = []
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
            # The doctor writes first: a doctor's message after a question would rightly silence its AI answer
            # (test_ai_stale_answer_guard), and this test is about the AI failing.
            sends = [(doctor, f"advice {i}") for i in range(QUESTIONS)] + \
                [(patient, f"question {i}") for i in range(QUESTIONS)]
            for sender, content in sends:
                r = await http.post("/api/message/send", json={"group_id": care_group.group_id, "content": content},
                                    headers={"Authorization": f"Bearer {access_token(sender)}"})
                assert r.status_code == 201, r.text
                told.append(r.json())
                if sender == patient:
                    questions.append(r.json()["message_id"])
        # The doctors' messages are pushed as usual, whatever the AI does.
        for client in (p, d):
            for message in told:
                await client.wait_for(lambda f: f["type"] == "message" and f["seq"] == message["seq"])
        for client in (p, d):
            for question in questions:
                await client.wait_for(lambda f: f["type"] == "ai_status" and f["user_message_id"] == question
                                      and f["status"] == "failed", timeout=25)
                statuses = [f["status"] for f in client.frames
                            if f["type"] == "ai_status" and f["user_message_id"] == question]
                assert statuses[0] == "thinking" and statuses[-1] == "failed", (client.name, statuses)
        await assert_nothing_arrives(p, d, match=lambda f: f["type"] == "ai_reply", grace=ABSENCE_GRACE)
        for client in (p, d):
            assert not [f for f in client.frames if f["type"] == "ai_reply"], client.name
        await assert_all_received([p, d], told)
        await p.close()
        await d.close()

    asyncio.run(scenario())
    records = AIInteractionRecord.objects.select_related("user_message").order_by("created_at")
    assert [r.user_message.content for r in records] == [f"question {i}" for i in range(QUESTIONS)]
    for record in records:
        assert (record.status, record.error_message, record.attempts, record.ai_message) == \
            (Status.FAILED, reason, attempts, None)
    assert not Message.objects.filter(msg_type=MsgType.AI_REPLY).exists()
    assert_stored_once(told)
