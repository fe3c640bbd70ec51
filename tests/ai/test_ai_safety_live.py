"""The AI assistant as a safe care-team member, with real processes: two daphne servers, a Celery worker on a
Redis broker of the test's own, the reference AI service with a set latency, PostgreSQL.

An answer a doctor has overtaken, switched off or not approved never reaches a patient; a burst costs one call;
a red flag reaches the doctors (and a signed webhook), never the AI."""
import asyncio
import hashlib
import hmac
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from ai_bridge.models import AIInteractionRecord, DeliveryStatus, EscalationDelivery, Status
from chat.models import Message, MsgType
from groups.models import ChatGroup, GroupMember
from groups.services import group_create, member_add
from tests.support.api import access_token
from tests.support.live import needs_real_services
from tests.support.waiting import assert_nothing_arrives, wait_for
from tests.support.wsclient import Client
from users.models import Role

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]
SECRET = "e2e-webhook-secret"


class _Pager(BaseHTTPRequestHandler):
    received: list
    fail_first = 1  # the first delivery fails: the worker retries

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((body, self.headers.get("X-IM-Signature")))
        self.send_response(503 if len(self.received) <= self.fail_first else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def pager():
    handler = type("Pager", (_Pager,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    handler.url = f"http://127.0.0.1:{server.server_port}/page"
    yield handler
    server.shutdown()
    server.server_close()


@pytest.fixture
def system(start_redis, start_ai_service, start_worker, start_server, pager):
    """The reference AI service answering in 1.5 s, a worker, two servers; (servers, ai_service_url)."""
    ai, ai_url = start_ai_service("--latency", "1.5", "--jitter", "0")
    redis = start_redis()
    env = {"AI_SERVICE_URL": ai_url, "AI_SERVICE_API_KEY": "e2e-ai-key", "REDIS_URL": redis.url,
           "CELERY_BROKER_URL": redis.url, "AI_COALESCE_SECONDS": "1", "ESCALATION_WEBHOOK_URL": pager.url,
           "ESCALATION_WEBHOOK_SECRET": SECRET, "AI_RETRY_BACKOFF": "0.2", "AI_RETRY_BACKOFF_MAX": "0.5"}
    start_worker(**env)
    servers = (start_server("a", **env), start_server("b", **env))
    servers[0].ai_calls = lambda: httpx.get(ai_url.rsplit("/", 1)[0] + "/").json()["calls"]
    return servers


@pytest.fixture
def team(doctor, patient):
    """A new group: no assistant yet, so a reply would make the default one join."""
    group = group_create(creator=doctor, group_name="Live safety")
    member_add(group=group, user=patient, user_role=Role.PATIENT)
    return group


def _http(server, user):
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {access_token(user)}"}, timeout=10)


def _send(server, user, group, content):
    answer = _http(server, user).post("/api/message/send", json={"group_id": group.group_id, "content": content})
    assert answer.status_code == 201, answer.text
    return answer.json()


def _settled(message_id, timeout=20):
    return wait_for(lambda: AIInteractionRecord.objects.filter(user_message__message_id=message_id)
                    .exclude(status=Status.PROCESSING).first(), timeout=timeout)


def _calling(message_id):
    wait_for(lambda: AIInteractionRecord.objects.filter(user_message__message_id=message_id, attempts=1).exists(),
             timeout=15)


@pytest.mark.parametrize("takeover", ["switch off", "doctor writes"])
def test_an_answer_overtaken_during_the_call_never_reaches_the_patient(system, team, doctor, patient, takeover):
    a, b = system

    async def scenario():
        watcher = Client("patient", patient.user_id, access_token(patient))
        await watcher.connect(b.ws_url)
        question = await asyncio.to_thread(_send, a, patient, team, "My wound is red, what should I do?")
        await asyncio.to_thread(_calling, question["message_id"])
        if takeover == "switch off":
            changed = await asyncio.to_thread(lambda: _http(b, doctor).patch(f"/api/group/{team.group_id}",
                                                                             json={"ai_enabled": False}))
            assert changed.json()["ai_mode"] == "off"
        else:
            await asyncio.to_thread(_send, b, doctor, team, "Taking over: I will call you in 5 minutes.")
        await watcher.wait_for(lambda f: f["type"] == "ai_status" and f["status"] == "suppressed", timeout=15)
        await assert_nothing_arrives(watcher, match=lambda f: f["type"] == "ai_reply")
        await watcher.close()
        return question, watcher.frames

    question, frames = asyncio.run(scenario())
    record = _settled(question["message_id"])
    assert record.status == Status.SUPPRESSED
    assert not any(f["type"] == "ai_reply" for f in frames)
    assert not Message.objects.filter(group=team, msg_type=MsgType.AI_REPLY).exists()
    assert not GroupMember.objects.filter(group=team, user_role=Role.AI_ASSISTANT).exists()


def test_a_burst_across_two_servers_costs_one_call_and_gets_one_reply(system, team, patient):
    a, b = system
    calls_before = a.ai_calls()
    sent = [_send((a, b)[i % 2], patient, team, f"burst {i}") for i in range(10)]
    record = _settled(sent[-1]["message_id"])
    assert record.status == Status.SUCCESS
    reply = Message.objects.get(group=team, msg_type=MsgType.AI_REPLY)
    assert reply.reply_to.message_id == sent[-1]["message_id"]
    coalesced = AIInteractionRecord.objects.filter(group=team, status=Status.COALESCED)
    assert coalesced.count() == 9 and {r.answered_by_id for r in coalesced} == {record.pk}
    assert a.ai_calls() - calls_before == 1
    # A message after the reply starts a new round.
    later = _send(b, patient, team, "one more question")
    assert _settled(later["message_id"]).status == Status.SUCCESS
    assert Message.objects.filter(group=team, msg_type=MsgType.AI_REPLY).count() == 2
    assert a.ai_calls() - calls_before == 2


@pytest.mark.parametrize("text", ["I have crushing chest pain", "我突然胸痛，喘不过气"])
def test_a_red_flag_reaches_the_doctors_and_the_pager_never_the_ai(system, team, doctor, patient, pager, text,
                                                                   red_flags):
    a, b = system
    calls_before = a.ai_calls()

    async def scenario():
        dr, pt = Client("doctor", doctor.user_id, access_token(doctor)), Client("patient", patient.user_id,
                                                                                  access_token(patient))
        await dr.connect(a.ws_url)
        await pt.connect(b.ws_url)
        question = await asyncio.to_thread(_send, b, patient, team, text)
        escalation = await dr.wait_for(lambda f: f["type"] == "escalation", timeout=10)
        notice = await pt.wait_for(lambda f: f.get("msg_type") == "SYSTEM", timeout=10)
        await assert_nothing_arrives(pt, match=lambda f: f["type"] == "escalation")
        await dr.close()
        await pt.close()
        return question, escalation, notice, pt.frames

    question, escalation, notice, patient_frames = asyncio.run(scenario())
    record = AIInteractionRecord.objects.get(user_message__message_id=question["message_id"])
    assert record.status == Status.ESCALATED
    assert escalation["record_id"] == record.record_id and escalation["user_message_id"] == question["message_id"]
    assert not any(f["type"] == "escalation" for f in patient_frames)
    assert notice["reply_to"] == question["message_id"]
    assert ChatGroup.objects.get(pk=team.pk).ai_paused
    delivery = wait_for(lambda: EscalationDelivery.objects.filter(record=record, status=DeliveryStatus.DELIVERED)
                        .first(), timeout=20)
    assert delivery.attempts == 2 and len(pager.received) == 2  # the first was refused, then retried
    body, signature = pager.received[-1]
    assert signature == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert a.ai_calls() == calls_before
    # Paused until a doctor writes.
    quiet = _send(a, patient, team, "hello?")
    assert _settled(quiet["message_id"]).status == Status.SUPPRESSED
    _send(a, doctor, team, "I am calling you now.")
    assert not ChatGroup.objects.get(pk=team.pk).ai_paused


def test_review_mode_shows_the_draft_to_doctors_only_until_one_approves(system, team, doctor, patient):
    a, b = system
    assert _http(a, doctor).patch(f"/api/group/{team.group_id}", json={"ai_mode": "review"}).status_code == 200

    async def scenario():
        dr, pt = Client("doctor", doctor.user_id, access_token(doctor)), Client("patient", patient.user_id,
                                                                                  access_token(patient))
        await dr.connect(b.ws_url)
        await pt.connect(a.ws_url)
        question = await asyncio.to_thread(_send, a, patient, team, "Can I stop my pills?")
        draft = await dr.wait_for(lambda f: f["type"] == "ai_draft", timeout=15)
        await assert_nothing_arrives(pt, match=lambda f: f["type"] in ("ai_draft", "ai_reply"))
        assert not any(f["type"] in ("ai_draft", "ai_reply") for f in pt.frames)
        answer = await asyncio.to_thread(lambda: _http(b, patient).post(
            f"/api/ai/interactions/{draft['record_id']}/approve", json={}))
        assert answer.status_code == 403
        answer = await asyncio.to_thread(lambda: _http(b, doctor).post(
            f"/api/ai/interactions/{draft['record_id']}/approve", json={"content": "No: keep taking them."}))
        assert answer.status_code == 201
        reply = await pt.wait_for(lambda f: f["type"] == "ai_reply", timeout=10)
        again = await asyncio.to_thread(lambda: _http(a, doctor).post(
            f"/api/ai/interactions/{draft['record_id']}/approve", json={}))
        await dr.close()
        await pt.close()
        return question, draft, reply, again

    question, draft, reply, again = asyncio.run(scenario())
    assert draft["user_message_id"] == question["message_id"]
    assert reply["content"] == "No: keep taking them." and reply["reply_to"] == question["message_id"]
    assert again.status_code == 409
    record = AIInteractionRecord.objects.get(record_id=draft["record_id"])
    assert record.status == Status.SUCCESS and record.reviewed_by == doctor


def test_misbehaving_answers_end_settled_with_bounded_storage(system, team, patient, settings):
    a, _ = system
    results = {}
    for marker in ("#nul", "#huge"):
        sent = _send(a, patient, team, f"answer me {marker}")
        results[marker] = _settled(sent["message_id"])
    assert results["#nul"].status == Status.SUCCESS
    assert "\x00" not in results["#nul"].ai_message.content
    assert results["#huge"].status == Status.FAILED and results["#huge"].attempts == 1
    for record in AIInteractionRecord.objects.filter(group=team):
        assert len(str(record.response_body)) < 3 * settings.AI_RECORD_TEXT_MAX
