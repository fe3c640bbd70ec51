"""The web page and the clinical AI, in headless Chromium against real processes: the patient watches an answer
being written; a doctor reviews drafts and sees escalations; a patient never sees a draft."""
import os

import pytest
from django.conf import settings

from groups.services import group_update
from tests.support.live import needs_shared_database
from tests.support.web import CHROMIUM, OUTPUT, WAIT_MS, log_in, say, wait_text

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    needs_shared_database(),
    pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true", reason="no Chromium here"),
]


@pytest.fixture
def ai_system(start_ai_service, start_redis, start_worker, start_server, red_flags):
    """The reference AI service writing two words every 0.25 s, a worker when there is a broker, one server."""
    _, ai_url = start_ai_service("--latency", "0", "--jitter", "0", "--chunk-delay", "0.25")
    env = {"AI_SERVICE_URL": ai_url, "AI_SERVICE_API_KEY": "e2e-ai-key", "AI_COALESCE_SECONDS": "0"}
    if settings.REDIS_URL:
        redis = start_redis()
        env.update(REDIS_URL=redis.url, CELERY_BROKER_URL=redis.url)
        start_worker(**env)
    return start_server("web", **env)


def _shot(page, name):
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


def test_the_patient_sees_the_answer_grow_then_settle_as_one_message(browser, ai_system, team):
    pat = log_in(browser, ai_system, "pt_web")
    say(pat, "My ankle is swollen after a fall on the stairs this morning")
    growing = pat.locator(".msg.streaming .content")
    growing.first.wait_for(timeout=WAIT_MS)
    first = growing.first.inner_text()
    pat.wait_for_function("t => { const n = document.querySelector('.msg.streaming .content');"
                          " return n && n.textContent.length > t.length; }", arg=first, timeout=WAIT_MS)
    _shot(pat, "web-ai-streaming-patient")
    wait_text(pat, "Reference AI reply to: My ankle is swollen", "AI_REPLY")
    assert pat.locator(".msg.streaming").count() == 0
    assert pat.locator(".msg[data-msg-type=AI_REPLY]").count() == 1
    _shot(pat, "web-ai-settled-patient")


def test_a_doctor_approves_an_edited_draft_and_the_patient_sees_the_edit(browser, ai_system, team):
    doctor, patient, group = team
    group_update(group=group, ai_mode="review")
    doc, pat = log_in(browser, ai_system, "dr_web"), log_in(browser, ai_system, "pt_web")
    assert doc.locator("#ai-mode").input_value() == "review"
    say(pat, "Can I take my pills with grapefruit juice?")
    draft = doc.locator(".draft")
    draft.wait_for(timeout=WAIT_MS)
    assert "Reference AI reply to: Can I take my pills" in doc.locator(".draft-text").input_value()
    _shot(doc, "web-ai-draft-doctor")
    assert pat.locator(".draft, .msg.streaming, .msg[data-msg-type=AI_REPLY]").count() == 0
    doc.fill(".draft-text", "Better not: grapefruit changes how some pills work. I will check yours.")
    doc.click(".draft-approve")
    wait_text(pat, "Better not: grapefruit changes how some pills work.", "AI_REPLY")
    assert doc.locator(".draft").count() == 0
    assert pat.locator(".msg[data-msg-type=AI_REPLY]").count() == 1
    _shot(pat, "web-ai-approved-patient")


def test_a_doctor_rejects_a_draft_and_the_patient_sees_nothing(browser, ai_system, team):
    doctor, patient, group = team
    group_update(group=group, ai_mode="review")
    doc, pat = log_in(browser, ai_system, "dr_web"), log_in(browser, ai_system, "pt_web")
    say(pat, "Should I double the dose?")
    doc.locator(".draft").wait_for(timeout=WAIT_MS)
    doc.click(".draft-reject")
    doc.locator(".notice", has_text="rejected").wait_for(timeout=WAIT_MS)
    pat.wait_for_timeout(1000)
    assert pat.locator(".msg[data-msg-type=AI_REPLY]").count() == 0


def test_an_escalation_shows_a_banner_to_the_doctor_and_a_notice_to_the_patient(browser, ai_system, team):
    doc, pat = log_in(browser, ai_system, "dr_web"), log_in(browser, ai_system, "pt_web")
    say(pat, "I have crushing chest pain")
    doc.locator("#escalation-banner", has_text="chest pain").wait_for(timeout=WAIT_MS)
    assert doc.locator(".group-item .alert").count() == 1
    pat.locator(".msg[data-msg-type=SYSTEM] .content", has_text="emergency").wait_for(timeout=WAIT_MS)
    assert pat.locator("#escalation-banner").is_hidden()
    assert pat.locator(".msg[data-msg-type=AI_REPLY]").count() == 0
    _shot(doc, "web-ai-escalation-doctor")
    _shot(pat, "web-ai-escalation-patient")
    say(doc, "I am calling you right now.")
    doc.locator("#escalation-banner").wait_for(state="hidden", timeout=WAIT_MS)
    assert doc.locator(".group-item .alert").count() == 0
