"""Red flags go to the doctors, never to the AI: a SYSTEM notice, an `escalation` frame for doctors only, the
group paused until a doctor writes, and a signed webhook delivery, retried until the receiver takes it."""
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ai_bridge.models import AIInteractionRecord, DeliveryStatus, EscalationDelivery, Status, TriageRule
from ai_bridge.triage import red_flag
from chat.models import Message, MsgType
from chat.services import message_send
from groups.models import ChatGroup
from tests.support.waiting import wait_for
from tests.support.ws import connected, db, nothing, receive, run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("red_flags", "fresh_channel_layer")]
SECRET = "webhook-test-secret"


class Receiver(BaseHTTPRequestHandler):
    """A pager's endpoint: records each POST; the first `fail_first` are answered 500."""

    fail_first = 0
    received: list

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((body, self.headers.get("X-IM-Signature")))
        status = 500 if len(type(self).received) <= type(self).fail_first else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def webhook(settings):
    handler = type("Handler", (Receiver,), {"received": [], "fail_first": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.ESCALATION_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/page"
    settings.ESCALATION_WEBHOOK_SECRET = SECRET
    yield handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("text, reason", [
    ("I have crushing chest pain since an hour", "chest pain"),
    ("I can't breathe properly", "difficulty breathing"),
    ("我胸痛得厉害", "胸痛"),
    ("我现在呼吸困难", "呼吸困难"),
    ("I think about suicide", "suicide or self-harm"),
])
def test_default_red_flags_are_shipped_in_english_and_chinese(text, reason):
    assert red_flag(text).reason == reason


@pytest.mark.parametrize("text", ["My chest feels fine today", "I breathe well", "谢谢医生"])
def test_ordinary_messages_raise_no_flag(text):
    assert red_flag(text) is None


def test_a_red_flag_is_escalated_not_sent_to_the_ai(ai_service, care_group, patient, doctor, webhook):
    question, _ = message_send(sender=patient, group=care_group, content="I have crushing chest pain")
    record = AIInteractionRecord.objects.get(user_message=question)
    assert record.status == Status.ESCALATED and record.error_message == "red flag: chest pain"
    notice = Message.objects.get(group=care_group, msg_type=MsgType.SYSTEM)
    assert notice.reply_to == question and "doctor" in notice.content and "emergency" in notice.content
    assert ChatGroup.objects.get(pk=care_group.pk).ai_paused
    delivery = wait_for(lambda: EscalationDelivery.objects.filter(record=record, status=DeliveryStatus.DELIVERED)
                        .first())
    assert delivery.attempts == 1 and delivery.response_code == 204
    body, signature = webhook.received[0]
    assert signature == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    payload = json.loads(body)
    assert payload["record_id"] == record.record_id and payload["group_id"] == care_group.group_id
    assert "chest" not in json.dumps(payload["group_name"]) and "reason" in payload
    assert ai_service.calls == 0

    # Paused: the AI stays silent for the patient until a doctor writes; then it answers again.
    message_send(sender=patient, group=care_group, content="hello?")
    silent = wait_for(lambda: AIInteractionRecord.objects.filter(status=Status.SUPPRESSED).first())
    assert "escalation" in silent.error_message and ai_service.calls == 0
    message_send(sender=doctor, group=care_group, content="I am here, calling you now.")
    assert not ChatGroup.objects.get(pk=care_group.pk).ai_paused
    message_send(sender=patient, group=care_group, content="thanks")
    wait_for(lambda: AIInteractionRecord.objects.filter(status=Status.SUCCESS).exists())


def test_a_chinese_red_flag_gets_the_chinese_notice(ai_service, care_group, patient):
    message_send(sender=patient, group=care_group, content="医生，我呼吸困难")
    notice = Message.objects.get(group=care_group, msg_type=MsgType.SYSTEM)
    assert "医生" in notice.content and "急救" in notice.content


def test_the_webhook_is_retried_until_the_receiver_takes_it(ai_service, care_group, patient, webhook, settings):
    settings.AI_RETRY_BACKOFF, settings.AI_RETRY_BACKOFF_MAX = 0.05, 0.1
    webhook.fail_first = 2
    message_send(sender=patient, group=care_group, content="severe bleeding from my wound")
    delivery = wait_for(lambda: EscalationDelivery.objects.filter(status=DeliveryStatus.DELIVERED).first())
    assert delivery.attempts == 3 and len(webhook.received) == 3
    assert len({body for body, _ in webhook.received}) == 1  # the same signed body each time


def test_the_escalation_frame_reaches_doctors_only(ai_service, care_group, patient, doctor, assistant):
    async def scenario():
        async with connected(doctor) as dr, connected(patient) as pt:
            await db(message_send)(sender=patient, group=care_group, content="I want to kill myself")
            frames = [await receive(dr) for _ in range(3)]
            patient_frames = [await receive(pt) for _ in range(2)]
            await nothing(pt)
            return frames, patient_frames

    frames, patient_frames = run(scenario)
    escalation = next(f for f in frames if f["type"] == "escalation")
    assert escalation["group_id"] == care_group.group_id and escalation["reason"] == "red flag: suicide or self-harm"
    assert [f["type"] for f in patient_frames] == ["message", "message"]  # their message, then the notice
    assert patient_frames[1]["msg_type"] == "SYSTEM"


def test_an_admin_rule_takes_effect(ai_service, care_group, patient, settings):
    settings.AI_TRIAGE_CACHE_SECONDS = 60
    red_flag("warm up the cache")
    TriageRule.objects.create(pattern="purple spots", language="en", reason="rash with fever")
    message_send(sender=patient, group=care_group, content="There are purple spots on my legs")
    assert AIInteractionRecord.objects.get().status == Status.ESCALATED


@pytest.mark.parametrize("protocol", ["simple", "openai"])
def test_the_ai_itself_can_escalate(ai_service, care_group, patient, settings, protocol):
    settings.AI_SERVICE_PROTOCOL = protocol
    if protocol == "openai":
        settings.AI_SERVICE_URL = f"http://127.0.0.1:{ai_service.port}/v1"
    message_send(sender=patient, group=care_group, content="something odd, escalate-now please")
    record = wait_for(lambda: AIInteractionRecord.objects.filter(status=Status.ESCALATED).first())
    assert "the AI asked for a doctor" in record.error_message and "escalate-now" in record.error_message
    assert Message.objects.filter(group=care_group, msg_type=MsgType.SYSTEM).count() == 1
    assert not Message.objects.filter(group=care_group, msg_type=MsgType.AI_REPLY).exists()
    assert ChatGroup.objects.get(pk=care_group.pk).ai_paused
    if protocol == "openai":
        assert record.request_body["tools"][0]["function"]["name"] == "escalate_to_doctor"
