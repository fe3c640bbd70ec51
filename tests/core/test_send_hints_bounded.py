"""What a server keeps between a sender's sends (chat.sendhints) is bounded by SEND_HINTS_MAX: the oldest go
first, and 0 keeps nothing."""
import pytest

from chat import sendhints
from groups.models import ChatGroup


@pytest.fixture(autouse=True)
def _empty():
    sendhints.hints_clear()
    yield
    sendhints.hints_clear()


def test_the_oldest_hint_goes_when_the_bound_is_reached(settings):
    settings.SEND_HINTS_MAX = 2
    groups = [ChatGroup(group_id=f"group_{i}") for i in range(3)]
    for group in groups:
        sendhints.hint_keep(group.group_id, 7, group, "PATIENT")
    assert sendhints.hint_get("group_0", 7) is None
    assert [sendhints.hint_get(g.group_id, 7) for g in groups[1:]] == [(g, "PATIENT") for g in groups[1:]]


def test_no_hint_is_kept_with_a_bound_of_zero(settings):
    settings.SEND_HINTS_MAX = 0
    sendhints.hint_keep("group_0", 7, ChatGroup(group_id="group_0"), "DOCTOR")
    assert sendhints.hint_get("group_0", 7) is None
