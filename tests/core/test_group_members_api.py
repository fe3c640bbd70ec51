"""Group members: doctors and staff add, members list, a member leaves or is removed."""
import pytest

from groups.models import GroupMember
from groups.services import member_add
from tests.support.api import assert_error, counts
from users.models import Role

MEMBER_FIELDS = {"user_id", "username", "user_role", "joined_at", "last_read_seq"}


def member_ids(group):
    return set(GroupMember.objects.filter(group=group).values_list("user__user_id", flat=True))


@pytest.mark.parametrize("path", ["/api/group/{}/members", "/api/group/{}/members/"])
def test_in_group_doctor_adds_a_member_with_an_in_group_role(care_group, doctor, outsider, client_for, path):
    response = client_for(doctor).post(path.format(care_group.group_id),
                                       {"user_id": outsider.user_id, "user_role": "DOCTOR"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == MEMBER_FIELDS
    assert body["user_id"] == outsider.user_id and body["username"] == outsider.username
    assert body["user_role"] == "DOCTOR"  # the in-group role, not the PATIENT system role
    assert GroupMember.objects.get(group=care_group, user=outsider).user_role == "DOCTOR"
    assert client_for(doctor).get(f"/api/group/{care_group.group_id}").json()["member_count"] == 4


def test_staff_adds_a_member_to_a_group_it_is_not_in(care_group, staff, outsider, client_for):
    response = client_for(staff).post(f"/api/group/{care_group.group_id}/members",
                                      {"user_id": outsider.user_id, "user_role": "PATIENT"}, format="json")

    assert response.status_code == 201
    assert outsider.user_id in member_ids(care_group)


def test_an_added_member_can_read_the_group_at_once(care_group, doctor, outsider, client_for):
    assert_error(client_for(outsider).get(f"/api/group/{care_group.group_id}"), 403, "NOT_GROUP_MEMBER")

    client_for(doctor).post(f"/api/group/{care_group.group_id}/members",
                            {"user_id": outsider.user_id, "user_role": "PATIENT"}, format="json")

    assert client_for(outsider).get(f"/api/group/{care_group.group_id}").status_code == 200


@pytest.mark.parametrize("who", ["doctor", "patient", "assistant", "staff"])
def test_members_and_staff_list_the_members(care_group, doctor, patient, assistant, client_for, request, who):
    response = client_for(request.getfixturevalue(who)).get(f"/api/group/{care_group.group_id}/members")

    assert response.status_code == 200
    members = response.json()["members"]
    assert set(response.json()) == {"members"}
    assert all(set(m) == MEMBER_FIELDS for m in members)
    assert [(m["user_id"], m["user_role"]) for m in members] == [
        (doctor.user_id, "DOCTOR"), (patient.user_id, "PATIENT"), (assistant.user_id, "AI_ASSISTANT")]


@pytest.mark.parametrize("path", ["/api/group/{}/members/{}", "/api/group/{}/members/{}/"])
def test_a_member_leaves_by_itself(care_group, patient, client_for, path):
    response = client_for(patient).delete(path.format(care_group.group_id, patient.user_id))

    assert response.status_code == 204
    assert patient.user_id not in member_ids(care_group)
    assert_error(client_for(patient).get(f"/api/group/{care_group.group_id}"), 403, "NOT_GROUP_MEMBER")


def test_in_group_doctor_removes_a_member(care_group, doctor, patient, assistant, client_for):
    response = client_for(doctor).delete(f"/api/group/{care_group.group_id}/members/{patient.user_id}")

    assert response.status_code == 204
    assert member_ids(care_group) == {doctor.user_id, assistant.user_id}


def test_staff_removes_a_member(care_group, staff, patient, client_for):
    response = client_for(staff).delete(f"/api/group/{care_group.group_id}/members/{patient.user_id}")

    assert response.status_code == 204
    assert patient.user_id not in member_ids(care_group)


def test_adding_an_existing_member_is_already_member(care_group, doctor, patient, client_for):
    before = counts()

    response = client_for(doctor).post(f"/api/group/{care_group.group_id}/members",
                                       {"user_id": patient.user_id, "user_role": "DOCTOR"}, format="json")

    assert_error(response, 409, "ALREADY_MEMBER")
    assert counts() == before
    assert GroupMember.objects.get(group=care_group, user=patient).user_role == "PATIENT"


@pytest.mark.parametrize("who", ["patient", "assistant"])
def test_in_group_non_doctors_cannot_add_members(care_group, outsider, client_for, request, who):
    before = counts()

    response = client_for(request.getfixturevalue(who)).post(
        f"/api/group/{care_group.group_id}/members", {"user_id": outsider.user_id, "user_role": "PATIENT"},
        format="json")

    assert_error(response, 403, "PERMISSION_DENIED")
    assert counts() == before


def test_doctor_user_who_is_a_patient_in_the_group_cannot_add_members(care_group, make_user, outsider, client_for):
    doctor_as_patient = make_user(Role.DOCTOR)
    member_add(group=care_group, user=doctor_as_patient, user_role=Role.PATIENT)
    before = counts()

    response = client_for(doctor_as_patient).post(
        f"/api/group/{care_group.group_id}/members", {"user_id": outsider.user_id, "user_role": "PATIENT"},
        format="json")

    assert_error(response, 403, "PERMISSION_DENIED")
    assert counts() == before


def test_outsider_cannot_add_itself(care_group, outsider, client_for):
    response = client_for(outsider).post(f"/api/group/{care_group.group_id}/members",
                                         {"user_id": outsider.user_id, "user_role": "DOCTOR"}, format="json")

    assert_error(response, 403, "NOT_GROUP_MEMBER")
    assert outsider.user_id not in member_ids(care_group)


def test_outsider_cannot_list_the_members(care_group, outsider, client_for):
    response = client_for(outsider).get(f"/api/group/{care_group.group_id}/members")

    error = assert_error(response, 403, "NOT_GROUP_MEMBER")
    assert "members" not in response.json() and "username" not in str(error)


def test_a_patient_cannot_remove_another_member(care_group, patient, assistant, client_for):
    response = client_for(patient).delete(f"/api/group/{care_group.group_id}/members/{assistant.user_id}")

    assert_error(response, 403, "PERMISSION_DENIED")
    assert assistant.user_id in member_ids(care_group)


def test_outsider_cannot_remove_a_member(care_group, outsider, patient, client_for):
    response = client_for(outsider).delete(f"/api/group/{care_group.group_id}/members/{patient.user_id}")

    assert_error(response, 403, "NOT_GROUP_MEMBER")
    assert patient.user_id in member_ids(care_group)


BAD_ADD_BODIES = {
    "empty body": {},
    "no role": {"user_id": "{outsider}"},
    "no user": {"user_role": "PATIENT"},
    "unknown role": {"user_id": "{outsider}", "user_role": "NURSE"},
    "role a list": {"user_id": "{outsider}", "user_role": ["PATIENT"]},
    "user_id an object": {"user_id": {"id": 1}, "user_role": "PATIENT"},
}


@pytest.mark.parametrize("body", BAD_ADD_BODIES.values(), ids=BAD_ADD_BODIES.keys())
def test_bad_member_add_is_a_validation_error(care_group, doctor, outsider, client_for, body):
    body = {k: v.replace("{outsider}", outsider.user_id) if isinstance(v, str) else v for k, v in body.items()}
    before = counts()

    response = client_for(doctor).post(f"/api/group/{care_group.group_id}/members", body, format="json")

    assert_error(response, 400, "VALIDATION_ERROR")
    assert counts() == before


def test_adding_an_unknown_user_is_not_found(care_group, doctor, client_for):
    before = counts()

    response = client_for(doctor).post(f"/api/group/{care_group.group_id}/members",
                                       {"user_id": "user_doesnotexist", "user_role": "PATIENT"}, format="json")

    assert_error(response, 404, "NOT_FOUND")
    assert counts() == before


@pytest.mark.parametrize("target", ["user_doesnotexist", "outsider"])
def test_removing_someone_who_is_not_a_member_is_not_found(care_group, doctor, outsider, client_for, target):
    user_id = outsider.user_id if target == "outsider" else target
    before = counts()

    response = client_for(doctor).delete(f"/api/group/{care_group.group_id}/members/{user_id}")

    assert_error(response, 404, "NOT_FOUND")
    assert counts() == before
