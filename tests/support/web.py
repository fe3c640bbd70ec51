"""Driving the web page in headless Chromium: the browser, a care team that logs in with a password, page helpers."""
import shutil

import pytest
from django.db import connections

from groups.services import group_create, member_add
from tests.support.live import ROOT
from users.models import Role
from users.services import user_create

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OUTPUT = ROOT / "test-output"  # screenshots
PASSWORD = "browser-test-pass"
WAIT_MS = 20_000


@pytest.fixture
def team(db):
    """A doctor and a patient who log in with PASSWORD, in a group with the AI assistant."""
    doctor = user_create(username="dr_web", user_role=Role.DOCTOR, password=PASSWORD)
    patient = user_create(username="pt_web", user_role=Role.PATIENT, password=PASSWORD)
    assistant = user_create(username="ai_web", user_role=Role.AI_ASSISTANT)
    group = group_create(creator=doctor, group_name="Web ward")
    member_add(group=group, user=patient, user_role=Role.PATIENT)
    member_add(group=group, user=assistant, user_role=Role.AI_ASSISTANT)
    return doctor, patient, group


@pytest.fixture
def browser():
    if CHROMIUM is None:
        pytest.fail("CI must have Chromium: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        # While Playwright runs, its event loop counts as running in this thread, so the test's own ORM calls had
        # database connections of that loop's context (asgiref), not the thread's: they go back while it still
        # runs, or one of them would hold the test database to the end ("1 other session using the database").
        connections.close_all()
        browser.close()


# Records the close code of every WebSocket the page opens, in window.__closeCodes (the page keeps only the last).
RECORD_CLOSE_CODES = """
const Native = window.WebSocket;
window.__closeCodes = [];
window.WebSocket = function (...args) {
  const ws = new Native(...args);
  ws.addEventListener("close", (event) => window.__closeCodes.push(event.code));
  return ws;
};
Object.assign(window.WebSocket, Native);
"""


def log_in(browser, server, username):
    page = browser.new_context(viewport={"width": 1100, "height": 700}).new_page()
    page.add_init_script(RECORD_CLOSE_CODES)
    page.goto(server.url + "/")
    page.fill("#login-username", username)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#conn-status[data-state=online]", timeout=WAIT_MS)
    page.wait_for_selector(".group-item.active", timeout=WAIT_MS)
    assert page.locator("#login").is_hidden()
    return page


def say(page, text):
    page.fill("#composer-input", text)
    page.press("#composer-input", "Enter")


def message(page, text, msg_type="TEXT"):
    return page.locator(f".msg[data-msg-type={msg_type}] .content", has_text=text)


def wait_text(page, text, msg_type="TEXT"):
    message(page, text, msg_type).first.wait_for(timeout=WAIT_MS)
