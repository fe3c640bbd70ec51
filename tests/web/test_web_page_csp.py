"""The web page works under its Content-Security-Policy in a real browser: it logs in, opens its WebSocket and
sends, and the browser reports no violation of the policy."""
import pytest

from groups.services import group_create
from tests.support.live import needs_shared_database
from tests.support.web import CHROMIUM, PASSWORD, WAIT_MS
from users.models import Role
from users.services import user_create

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    needs_shared_database(),
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (make test installs Debian's)"),
]


def test_the_page_runs_under_its_policy_without_a_violation(browser, start_server):
    doctor = user_create(username="dr_csp", user_role=Role.DOCTOR, password=PASSWORD)
    group_create(creator=doctor, group_name="CSP ward", ai_enabled=False)
    server = start_server("web-csp")
    page = browser.new_context().new_page()
    console = []
    page.on("console", lambda msg: console.append(msg.text))
    answer = page.goto(server.url + "/")
    assert "connect-src 'self'" in answer.headers["content-security-policy"]

    page.fill("#login-username", "dr_csp")
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#conn-status[data-state=online]", timeout=WAIT_MS)  # the WebSocket is allowed
    page.wait_for_selector(".group-item.active", timeout=WAIT_MS)
    page.fill("#composer-input", "under the policy")
    page.press("#composer-input", "Enter")
    page.locator(".msg .content", has_text="under the policy").first.wait_for(timeout=WAIT_MS)
    assert page.evaluate("getComputedStyle(document.querySelector('header')).display") == "flex", \
        "the stylesheet is applied"
    violations = [text for text in console if "Content Security Policy" in text]
    assert violations == []
