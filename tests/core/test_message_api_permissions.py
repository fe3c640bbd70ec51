"""Outsiders cannot send, read or list a group's messages: 403 NOT_GROUP_MEMBER and nothing stored."""
import pytest

from chat.services import message_send
from groups.models import ChatGroup
from tests.support.api import assert_error, counts
from users.models import Role


@pytest.fixture
def secret(care_group, doctor):
    return message_send(sender=doctor, group=care_group, content="lab results: positive")[0]


def assert_not_leaked(response, secret):
    assert "lab results" not in response.content.decode()
    assert "messages" not in response.json()


def test_outsider_cannot_send(care_group, secret, outsider, client_for):
    before = counts()

    response = client_for(outsider).post("/api/message/send", {"group_id": care_group.group_id, "content": "hi"},
                                         format="json")

    assert_error(response, 403, "NOT_GROUP_MEMBER")
    assert counts() == before
    assert ChatGroup.objects.get(pk=care_group.pk).last_seq == 1


def test_outsider_cannot_get_a_message(secret, outsider, client_for):
    response = client_for(outsider).get(f"/api/message/{secret.message_id}")

    assert_error(response, 403, "NOT_GROUP_MEMBER")
    assert_not_leaked(response, secret)


@pytest.mark.parametrize("query", ["", "&page=1&page_size=5", "&after_seq=0", "&after_seq=0&limit=1"])
def test_outsider_cannot_list_or_catch_up(care_group, secret, outsider, client_for, query):
    response = client_for(outsider).get(f"/api/message/list?group_id={care_group.group_id}{query}")

    assert_error(response, 403, "NOT_GROUP_MEMBER")
    assert_not_leaked(response, secret)


def test_a_doctor_user_outside_the_group_is_an_outsider(care_group, secret, make_user, client_for):
    other_doctor = make_user(Role.DOCTOR)

    assert_error(client_for(other_doctor).get(f"/api/message/{secret.message_id}"), 403, "NOT_GROUP_MEMBER")
    assert_error(client_for(other_doctor).get(f"/api/message/list?group_id={care_group.group_id}"), 403,
                 "NOT_GROUP_MEMBER")


def test_a_member_who_left_can_no_longer_read(care_group, secret, patient, client_for):
    client = client_for(patient)
    assert client.delete(f"/api/group/{care_group.group_id}/members/{patient.user_id}").status_code == 204

    assert_error(client.get(f"/api/message/{secret.message_id}"), 403, "NOT_GROUP_MEMBER")
    assert_error(client.post("/api/message/send", {"group_id": care_group.group_id, "content": "hi"},
                             format="json"), 403, "NOT_GROUP_MEMBER")


def test_staff_outside_the_group_cannot_send_as_a_member(care_group, secret, staff, client_for):
    """Staff read every group, but a message needs a sender with an in-group role."""
    before = counts()

    response = client_for(staff).post("/api/message/send", {"group_id": care_group.group_id, "content": "hi"},
                                      format="json")

    assert_error(response, 403, "NOT_GROUP_MEMBER")
    assert counts() == before


def test_unknown_message_id_is_not_found(secret, doctor, client_for):
    assert_error(client_for(doctor).get("/api/message/msg_doesnotexist"), 404, "NOT_FOUND")


def test_list_of_an_unknown_group_is_not_found(secret, doctor, client_for):
    assert_error(client_for(doctor).get("/api/message/list?group_id=group_doesnotexist"), 404, "NOT_FOUND")


def test_an_outsider_is_told_it_is_not_a_member_whatever_the_content(care_group, outsider, client_for):
    for content in ["", "   ", "x" * 5000]:
        answer = client_for(outsider).post("/api/message/send", {"group_id": care_group.group_id, "content": content},
                                           format="json")
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "NOT_GROUP_MEMBER"
