"""The web chat page in headless Chromium, against a real server, worker and reference AI service."""
import os

import httpx
import pytest
from django.conf import settings

from ai_bridge.models import AIInteractionRecord
from tests.support.api import access_token
from tests.support.live import needs_shared_database
from tests.support.web import CHROMIUM, OUTPUT, WAIT_MS, log_in, message, say, wait_text
from users.models import Role

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    needs_shared_database(),
    pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true",
                       reason="no Chromium here, and it could not be installed (make test installs Debian's)"),
]


@pytest.fixture
def chat_system(start_ai_service, start_redis, start_worker, start_server):
    """The reference AI service, a Celery worker when there is a broker, and one daphne server."""
    _, ai_url = start_ai_service("--latency", "0.3", "--jitter", "0")
    env = {"AI_SERVICE_URL": ai_url, "AI_SERVICE_API_KEY": "e2e-ai-key"}
    if settings.REDIS_URL:
        redis = start_redis()  # a broker of this test's own: no other run's worker takes its tasks
        env.update(REDIS_URL=redis.url, CELERY_BROKER_URL=redis.url)
        start_worker(**env)
    return start_server("web", **env)


def test_doctor_and_patient_chat_with_the_ai_and_the_doctor_takes_over(browser, chat_system, team):
    doctor, patient, group = team
    doc, pat = log_in(browser, chat_system, "dr_web"), log_in(browser, chat_system, "pt_web")

    say(pat, "Hello doctor, my knee hurts")
    wait_text(doc, "Hello doctor, my knee hurts")
    for page in (doc, pat):
        wait_text(page, "Reference AI reply to: Hello doctor, my knee hurts", "AI_REPLY")
    # Roles are visible: the patient's, the AI's and (below) the doctor's messages look different.
    assert doc.locator(".msg.from-PATIENT .sender", has_text="pt_web").count() == 1
    assert doc.locator(".msg.from-AI_ASSISTANT .role", has_text="AI assistant").count() == 1
    say(doc, "Rest it today; I will call you.")
    wait_text(pat, "Rest it today; I will call you.")
    OUTPUT.mkdir(exist_ok=True)
    doc.screenshot(path=str(OUTPUT / "web-chat-doctor.png"), full_page=True)
    pat.screenshot(path=str(OUTPUT / "web-chat-patient.png"), full_page=True)

    # The patient sees no switch; the doctor turns the AI off.
    assert pat.locator("#ai-mode-label").is_hidden()
    doc.select_option("#ai-mode", "off")
    doc.locator(".notice", has_text="The AI assistant is off").wait_for(timeout=WAIT_MS)
    say(pat, "Is it fine to walk?")
    wait_text(doc, "Is it fine to walk?")
    pat.wait_for_timeout(2000)  # the AI service answers in 0.3 s when asked
    assert doc.locator(".msg[data-msg-type=AI_REPLY]").count() == 1
    assert pat.locator(".msg[data-msg-type=AI_REPLY]").count() == 1
    assert AIInteractionRecord.objects.filter(group=group).count() == 1


def test_html_in_a_message_is_shown_as_text_and_runs_nothing(browser, chat_system, team):
    doc, pat = log_in(browser, chat_system, "dr_web"), log_in(browser, chat_system, "pt_web")
    evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>bold</b>'
    say(pat, evil)
    wait_text(doc, "<script>window.__pwned=2</script>")
    for page in (doc, pat):
        assert message(page, "onerror").first.inner_text() == evil
        assert page.locator("#messages img, #messages script, #messages b").count() == 0
        assert page.evaluate("window.__pwned") is None


def test_a_restarted_server_leaves_no_gap_and_no_duplicate(browser, chat_system, team, client_for):
    doctor, patient, group = team
    doc = log_in(browser, chat_system, "dr_web")
    say(doc, "before the restart")
    wait_text(doc, "before the restart")

    chat_system.stop()  # SIGTERM: the server closes its WebSockets with 1012 ("restarting")
    doc.wait_for_function("window.__closeCodes.includes(1012)", timeout=WAIT_MS)
    api = client_for(doctor)
    for i in range(3):
        sent = api.post("/api/message/send", {"group_id": group.group_id, "content": f"sent while down {i}"},
                        format="json")
        assert sent.status_code == 201
    chat_system.restart()

    doc.wait_for_selector("#conn-status[data-state=online]", timeout=WAIT_MS)
    for i in range(3):
        wait_text(doc, f"sent while down {i}")
    say(doc, "after the restart")
    wait_text(doc, "after the restart")
    seqs = [int(s) for s in doc.locator(".msg").evaluate_all("nodes => nodes.map(n => n.dataset.seq)")]
    assert seqs == list(range(1, 6))


def test_typing_members_and_earlier_pages_show_on_the_page(browser, chat_system, team, make_user):
    doctor, patient, group = team
    # Through the server's own REST API, so that its pushes reach the pages.
    api = httpx.Client(base_url=chat_system.url, timeout=10,
                       headers={"Authorization": f"Bearer {access_token(doctor)}"})
    for i in range(45):  # more than one page of history (30)
        assert api.post("/api/message/send", json={"group_id": group.group_id, "content": f"history {i}"}
                        ).status_code == 201
    doc, pat = log_in(browser, chat_system, "dr_web"), log_in(browser, chat_system, "pt_web")
    assert pat.locator(".msg").count() == 30
    pat.locator("#messages").evaluate("box => { box.scrollTop = 0; box.dispatchEvent(new Event('scroll')); }")
    wait_text(pat, "history 0")
    assert pat.locator(".msg").count() == 45

    doc.type("#composer-input", "typing")
    pat.locator("#typing", has_text="dr_web is typing").wait_for(timeout=WAIT_MS)

    newcomer = make_user(Role.PATIENT, username="pt_new")
    assert api.post(f"/api/group/{group.group_id}/members", json={"user_id": newcomer.user_id, "user_role": "PATIENT"}
                    ).status_code == 201
    pat.locator(".notice", has_text="pt_new joined (PATIENT)").wait_for(timeout=WAIT_MS)
    assert api.delete(f"/api/group/{group.group_id}/members/{newcomer.user_id}").status_code == 204
    pat.locator(".notice", has_text="pt_new left (PATIENT)").wait_for(timeout=WAIT_MS)


def test_a_deactivated_user_is_signed_out_and_the_page_stops_reconnecting(browser, chat_system, team, make_user):
    doctor, patient, group = team
    pat = log_in(browser, chat_system, "pt_web")
    opened = []
    pat.on("websocket", lambda ws: opened.append(ws.url))
    staff = make_user(Role.DOCTOR, is_staff=True)
    answer = httpx.post(f"{chat_system.url}/api/user/{patient.user_id}/deactivate",
                        headers={"Authorization": f"Bearer {access_token(staff)}"})
    assert answer.status_code == 200
    pat.wait_for_selector("#conn-status[data-state=stopped][data-close-code='4403']", timeout=WAIT_MS)
    pat.locator("#login-error", has_text="can no longer connect").wait_for(timeout=WAIT_MS)
    assert pat.locator("#login").is_visible()
    pat.wait_for_timeout(3000)  # a page that kept retrying would have opened sockets by now
    assert opened == []
