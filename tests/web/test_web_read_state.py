"""The web page shows the server's unread counts and tells the server what the user has read."""
import pytest

from chat.services import message_send
from groups.models import GroupMember
from groups.services import group_create
from tests.support.live import needs_shared_database
from tests.support.web import CHROMIUM, PASSWORD, WAIT_MS, log_in
from users.models import Role
from users.services import user_create

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    needs_shared_database(),
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here"),
]


@pytest.fixture
def waiting(db):
    """pt_read's older group with three messages from the doctor, and a newer one the page opens first."""
    doctor = user_create(username="dr_read", user_role=Role.DOCTOR, password=PASSWORD)
    patient = user_create(username="pt_read", user_role=Role.PATIENT, password=PASSWORD)
    group = group_create(creator=doctor, group_name="Waiting ward", ai_enabled=False, members=[(patient, Role.PATIENT)])
    group_create(creator=doctor, group_name="Opened first", ai_enabled=False, members=[(patient, Role.PATIENT)])
    for text in ("one", "two", "three"):
        message_send(sender=doctor, group=group, content=text)
    return group, patient


# The rows first: once the browser runs, this thread has an event loop and pushes from it would fail.
def test_unread_badges_come_from_the_server_and_opening_a_group_reads_it(waiting, browser, start_server):
    waiting, patient = waiting
    server = start_server("web-read")

    page = log_in(browser, server, "pt_read")  # the newest group opens; the other waits with its badge
    badge = page.locator(f'.group-item[data-group-id="{waiting.group_id}"] .badge')
    badge.wait_for(timeout=WAIT_MS)
    assert badge.text_content() == "3"  # sent before the page was open: only the server knew

    page.click(f'.group-item[data-group-id="{waiting.group_id}"]')
    page.locator(".msg .content", has_text="three").first.wait_for(timeout=WAIT_MS)
    page.wait_for_function(
        "() => !document.querySelector('.group-item .badge')", timeout=WAIT_MS)
    for _ in range(100):
        if GroupMember.objects.get(group=waiting, user=patient).last_read_seq == 3:
            break
        page.wait_for_timeout(100)
    assert GroupMember.objects.get(group=waiting, user=patient).last_read_seq == 3

    page.reload()
    page.wait_for_selector("#conn-status[data-state=online]", timeout=WAIT_MS)
    page.wait_for_timeout(500)
    assert page.locator(".group-item .badge").count() == 0  # read on the server: no badge after a reload
