"""The AI bridge's decisions are on the audit trail: draft approvals and rejections, escalations, triage edits."""
import pytest

from ai_bridge.models import AIInteractionRecord, Status, TriageRule
from chat.services import message_send
from groups.services import group_update
from records.models import AuditEvent
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _events(action):
    return list(AuditEvent.objects.filter(action=action))


def test_draft_decisions_are_audited_with_the_doctor(ai_service, care_group, doctor, patient, client_for):
    group_update(group=care_group, ai_mode="review")
    for text, verb in (("first", "approve"), ("second", "reject")):
        message_send(sender=patient, group=care_group, content=text)
        record = wait_for(lambda: AIInteractionRecord.objects.filter(status=Status.AWAITING_REVIEW).first())
        assert client_for(doctor).post(f"/api/ai/interactions/{record.record_id}/{verb}", {},
                                       format="json").status_code in (200, 201)
        [event] = _events(f"ai_draft.{verb}")
        assert event.target == record.record_id and event.actor_id == doctor.user_id
        assert event.details["group_id"] == care_group.group_id


def test_an_escalation_is_audited_once(ai_service, care_group, patient, red_flags):
    message_send(sender=patient, group=care_group, content="I can't breathe")
    record = AIInteractionRecord.objects.get()
    [event] = _events("ai_record.escalate")
    assert event.target == record.record_id and event.details["reason"] == "red flag: difficulty breathing"
    assert set(event.details) == {"group_id", "reason"}  # no message content


def test_triage_rule_edits_in_the_admin_are_audited(admin_browser, superuser):
    answer = admin_browser.post("/admin/ai_bridge/triagerule/add/", {
        "pattern": "blue lips", "language": "en", "reason": "cyanosis", "active": "on"})
    assert answer.status_code == 302
    rule = TriageRule.objects.get(pattern="blue lips")
    admin_browser.post(f"/admin/ai_bridge/triagerule/{rule.pk}/change/", {
        "pattern": "blue lips", "language": "en", "reason": "cyanosis (lips)", "active": "on"})
    admin_browser.post(f"/admin/ai_bridge/triagerule/{rule.pk}/delete/", {"post": "yes"})
    assert not TriageRule.objects.filter(pk=rule.pk).exists()
    for action in ("triage_rule.create", "triage_rule.update", "triage_rule.delete"):
        [event] = _events(action)
        assert event.target == f"triage_rule:{rule.pk}" and event.actor_id == superuser.user_id
    assert _events("triage_rule.update")[0].details["reason"] == "cyanosis (lips)"


def test_a_bad_regular_expression_is_refused_by_the_admin(admin_browser):
    answer = admin_browser.post("/admin/ai_bridge/triagerule/add/", {
        "pattern": "chest (pain", "is_regex": "on", "language": "en", "reason": "broken", "active": "on"})
    assert answer.status_code == 200 and b"Not a valid regular expression" in answer.content
    assert not TriageRule.objects.filter(reason="broken").exists()
