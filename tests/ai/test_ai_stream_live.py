"""Streamed AI answers with real processes: two daphne servers, a Celery worker, the reference AI service
streaming a few words every 0.2 s. What a member sees growing is what is stored; drafts stream to doctors only;
a doctor who writes mid-stream stops it, and nothing is stored."""
import asyncio

import httpx
import pytest

from ai_bridge.models import AIInteractionRecord, Status
from chat.models import Message, MsgType
from groups.services import group_create, member_add
from tests.support.api import access_token
from tests.support.live import needs_real_services
from tests.support.waiting import ABSENCE_GRACE, assert_nothing_arrives, wait_for
from tests.support.wsclient import Client
from users.models import Role

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]
REST_OF_STREAM = 1.5  # seconds the reference stream would still have been writing, had it not been stopped
LONG = "my knee has been swollen and warm since yesterday evening and it hurts when I walk up the stairs"


@pytest.fixture(params=["simple", "openai"])
def system(request, start_redis, start_ai_service, start_worker, start_server):
    _, ai_url = start_ai_service("--latency", "0", "--jitter", "0", "--chunk-delay", "0.2")
    redis = start_redis()
    env = {"AI_SERVICE_URL": ai_url if request.param == "simple" else ai_url.rsplit("/", 1)[0] + "/v1",
           "AI_SERVICE_PROTOCOL": request.param, "AI_SERVICE_API_KEY": "e2e-ai-key", "REDIS_URL": redis.url,
           "CELERY_BROKER_URL": redis.url, "AI_COALESCE_SECONDS": "0", "AI_STREAM_FRAME_MS": "50",
           "AI_RETRY_BACKOFF": "0.2", "AI_RETRY_BACKOFF_MAX": "0.4"}
    start_worker(**env)
    return start_server("a", **env), start_server("b", **env)


@pytest.fixture
def team(doctor, patient, assistant):
    group = group_create(creator=doctor, group_name="Streaming")
    member_add(group=group, user=patient, user_role=Role.PATIENT)
    member_add(group=group, user=assistant, user_role=Role.AI_ASSISTANT)
    return group


def _send(server, user, group, content):
    answer = httpx.post(f"{server.url}/api/message/send", json={"group_id": group.group_id, "content": content},
                        headers={"Authorization": f"Bearer {access_token(user)}"}, timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.json()


def _streamed_text(frames, record_id) -> str:
    """The text a client shows: the deltas of the last attempt (index 0 starts afresh), in order."""
    deltas = [f for f in frames if f["type"] == "ai_delta" and f["record_id"] == record_id]
    last = max(i for i, f in enumerate(deltas) if f["index"] == 0)
    attempt = deltas[last:]
    assert [f["index"] for f in attempt] == list(range(len(attempt)))
    return "".join(f["text"] for f in attempt)


@pytest.mark.parametrize("marker", ["", " #cut"])
def test_the_deltas_a_member_sees_add_up_to_the_stored_reply(system, team, doctor, patient, marker):
    a, b = system

    async def scenario():
        watchers = [Client("patient", patient.user_id, access_token(patient)),
                    Client("doctor", doctor.user_id, access_token(doctor))]
        await watchers[0].connect(b.ws_url)
        await watchers[1].connect(a.ws_url)
        question = await asyncio.to_thread(_send, a, patient, team, LONG + marker)
        for w in watchers:
            await w.wait_for(lambda f: f["type"] == "ai_reply", timeout=20)
            await w.close()
        return question, watchers

    question, watchers = asyncio.run(scenario())
    record = AIInteractionRecord.objects.get(user_message__message_id=question["message_id"])
    reply = Message.objects.get(group=team, msg_type=MsgType.AI_REPLY)
    assert record.status == Status.SUCCESS and record.ai_message == reply
    for w in watchers:
        assert sum(f["type"] == "ai_delta" for f in w.frames) > 3  # it grew, in pieces
        assert _streamed_text(w.frames, record.record_id) == reply.content
    if marker:
        assert record.attempts == 2  # cut short once, streamed again from the start


def test_in_review_mode_only_doctors_see_the_stream(system, team, doctor, patient):
    a, b = system
    httpx.patch(f"{a.url}/api/group/{team.group_id}", json={"ai_mode": "review"},
                headers={"Authorization": f"Bearer {access_token(doctor)}"}, timeout=10).raise_for_status()

    async def scenario():
        dr, pt = Client("doctor", doctor.user_id, access_token(doctor)), Client("patient", patient.user_id,
                                                                                  access_token(patient))
        await dr.connect(a.ws_url)
        await pt.connect(b.ws_url)
        await asyncio.to_thread(_send, b, patient, team, LONG)
        draft = await dr.wait_for(lambda f: f["type"] == "ai_draft", timeout=20)
        await assert_nothing_arrives(pt, match=lambda f: f["type"] in ("ai_delta", "ai_draft", "ai_reply"),
                                     grace=ABSENCE_GRACE)
        await dr.close()
        await pt.close()
        return draft, dr.frames, pt.frames

    draft, doctor_frames, patient_frames = asyncio.run(scenario())
    assert _streamed_text(doctor_frames, draft["record_id"]) == draft["content"]
    assert not any(f["type"] in ("ai_delta", "ai_draft", "ai_reply") for f in patient_frames)


def test_a_doctor_writing_mid_stream_stops_it_and_nothing_is_stored(system, team, doctor, patient):
    a, b = system

    async def scenario():
        pt = Client("patient", patient.user_id, access_token(patient))
        await pt.connect(b.ws_url)
        question = await asyncio.to_thread(_send, a, patient, team, LONG)
        await pt.wait_for(lambda f: f["type"] == "ai_delta", timeout=20)
        await asyncio.to_thread(_send, a, doctor, team, "I am here, let me answer this one.")
        status = await pt.wait_for(lambda f: f["type"] == "ai_status" and f["status"] == "suppressed", timeout=10)
        await assert_nothing_arrives(pt, match=lambda f: f["type"] == "ai_reply", grace=REST_OF_STREAM)
        await pt.close()
        return question, status, pt.frames

    question, status, frames = asyncio.run(scenario())
    record = wait_for(lambda: AIInteractionRecord.objects.filter(user_message__message_id=question["message_id"])
                      .exclude(status=Status.PROCESSING).first())
    assert record.status == Status.SUPPRESSED and "doctor wrote" in record.error_message
    assert status["user_message_id"] == question["message_id"]
    assert not Message.objects.filter(group=team, msg_type=MsgType.AI_REPLY).exists()
    assert not any(f["type"] == "ai_reply" for f in frames)
    doctor_at = next(i for i, f in enumerate(frames) if f.get("content") == "I am here, let me answer this one.")
    # At most one frame already on its way when the doctor's message was stored; nothing after it was decided.
    assert sum(f["type"] == "ai_delta" for f in frames[doctor_at:]) <= 1
