"""A server keeps what it read of a group and a sender between the sender's sends (chat.sendhints), and a change
made elsewhere, which it is never told about, still holds from the next send on: a removed member is refused, a
changed in-group role is the one stored, an AI switched on gets the patient's next message. A send handed from
the event loop to the ORM path counts once against the send rate."""
import re

import httpx
import pytest

from ai_bridge.models import AIInteractionRecord
from chat.models import Message
from groups.models import GroupMember
from groups.services import group_create, group_update, member_add, member_remove, member_role_change
from tests.support.api import access_token
from tests.support.live import needs_real_services
from tests.support.teams import care_team
from users.models import Role

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), needs_real_services()]

METRICS_TOKEN = "send-hints-metrics"


@pytest.fixture
def server(start_server):
    return start_server("hints", METRICS_TOKEN=METRICS_TOKEN)


def _direct(server) -> float:
    """Messages this server stored on its event loop (its Prometheus counter)."""
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    found = re.search(r'im_message_send_path_total\{path="direct"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def _send(server, user, group, content: str, **fields) -> httpx.Response:
    return httpx.post(f"{server.url}/api/message/send", timeout=10,
                      json={"group_id": group.group_id, "content": content, **fields},
                      headers={"Authorization": f"Bearer {access_token(user)}"})


def _warm(server, user, group, sends: int = 3) -> None:
    """Sends until the server answers them on its event loop (it has seen the user: tests.core.test_send_direct_live)."""
    for i in range(sends):
        assert _send(server, user, group, f"warm {i}").status_code == 201


def test_a_member_removed_elsewhere_is_refused_at_the_next_send(server, make_user):
    doctor, (patient,), group = care_team(make_user, 1)
    _warm(server, patient, group)
    before = _direct(server)
    assert _send(server, patient, group, "still in").status_code == 201
    assert _direct(server) == before + 1  # on the event loop, with what it kept of the group

    member_remove(group=group, user=patient)  # in this process: the server hears nothing of it
    refused = _send(server, patient, group, "after removal")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "NOT_GROUP_MEMBER"
    assert not Message.objects.filter(group=group, content="after removal").exists()

    member_add(group=group, user=patient, user_role=Role.PATIENT)
    assert _send(server, patient, group, "back again").status_code == 201


def test_a_changed_in_group_role_is_the_one_stored(server, make_user):
    doctor, (patient,), group = care_team(make_user, 1)
    colleague = make_user(Role.DOCTOR)
    member_add(group=group, user=colleague, user_role=Role.PATIENT)  # joined as a patient, say for a relative
    _warm(server, colleague, group)
    member_role_change(member=GroupMember.objects.get(group=group, user=colleague), user_role=Role.DOCTOR)

    sent = _send(server, colleague, group, "as the doctor now")
    assert sent.status_code == 201 and sent.json()["from_role"] == Role.DOCTOR
    assert Message.objects.get(message_id=sent.json()["message_id"]).from_role == Role.DOCTOR


def test_a_patients_next_message_reaches_an_ai_switched_on_elsewhere(server, make_user):
    doctor, patient, assistant = make_user(Role.DOCTOR), make_user(Role.PATIENT), make_user(Role.AI_ASSISTANT)
    group = group_create(creator=doctor, group_name="AI later", ai_enabled=False)
    member_add(group=group, user=patient, user_role=Role.PATIENT)
    member_add(group=group, user=assistant, user_role=Role.AI_ASSISTANT)
    _warm(server, patient, group)
    before = _direct(server)
    assert _send(server, patient, group, "AI still off").status_code == 201
    assert _direct(server) == before + 1

    group_update(group=group, ai_enabled=True)
    asked = _send(server, patient, group, "Is this rash normal?")
    assert asked.status_code == 201
    assert AIInteractionRecord.objects.filter(user_message__message_id=asked.json()["message_id"]).exists()


def test_a_send_handed_to_the_orm_path_counts_once_against_the_rate(start_server, make_user):
    server = start_server("hints-rate", IM_SEND_RATE="3/min")
    doctor, _, group = care_team(make_user, 1)
    # The server's first send goes to Django whole (the gate has not yet learnt the view's headers), where it counts
    # once; from then on the gate answers on the event loop.
    assert _send(server, doctor, group, "first", client_msg_id="c1").status_code == 201
    # A repeat: the event loop counts it, finds it stored, takes its count back, and Django counts it once.
    repeat = _send(server, doctor, group, "first", client_msg_id="c1")
    assert repeat.status_code == 200
    assert _send(server, doctor, group, "third").status_code == 201
    over = _send(server, doctor, group, "fourth")
    assert over.status_code == 429 and over.json()["error"]["code"] == "RATE_LIMITED"
    assert Message.objects.filter(group=group).count() == 2
