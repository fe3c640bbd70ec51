"""Who may create, read and change a group: outsiders get NOT_GROUP_MEMBER, the wrong role PERMISSION_DENIED."""
import pytest

from groups.models import ChatGroup
from groups.services import member_add
from tests.support.api import assert_error, counts
from users.models import Role


@pytest.mark.parametrize("role", [Role.PATIENT, Role.AI_ASSISTANT])
def test_only_doctor_users_and_staff_create_groups(make_user, client_for, role):
    caller = make_user(role)
    before = counts()

    response = client_for(caller).post("/api/group/create", {"group_name": "Mine"}, format="json")

    assert_error(response, 403, "PERMISSION_DENIED")
    assert counts() == before


def test_outsider_cannot_read_a_group(outsider, care_group, client_for):
    error = assert_error(client_for(outsider).get(f"/api/group/{care_group.group_id}"), 403, "NOT_GROUP_MEMBER")

    assert "Ward 7" not in str(error)


def test_outsider_cannot_patch_a_group(outsider, care_group, client_for):
    response = client_for(outsider).patch(f"/api/group/{care_group.group_id}", {"group_name": "Hijacked"},
                                          format="json")

    assert_error(response, 403, "NOT_GROUP_MEMBER")
    assert ChatGroup.objects.get(pk=care_group.pk).group_name == "Ward 7"


def test_doctor_user_outside_the_group_cannot_patch_it(make_user, care_group, client_for):
    other_doctor = make_user(Role.DOCTOR)

    response = client_for(other_doctor).patch(f"/api/group/{care_group.group_id}", {"ai_enabled": False},
                                              format="json")

    assert_error(response, 403, "NOT_GROUP_MEMBER")
    assert ChatGroup.objects.get(pk=care_group.pk).ai_enabled is True


@pytest.mark.parametrize("who", ["patient", "assistant"])
def test_in_group_non_doctors_cannot_patch_the_group(care_group, client_for, request, who):
    response = client_for(request.getfixturevalue(who)).patch(
        f"/api/group/{care_group.group_id}", {"ai_enabled": False, "group_name": "Mine"}, format="json")

    assert_error(response, 403, "PERMISSION_DENIED")
    care_group.refresh_from_db()
    assert care_group.ai_enabled is True and care_group.group_name == "Ward 7"


def test_the_in_group_role_decides_not_the_system_role(make_user, care_group, client_for):
    """A DOCTOR user who is a PATIENT inside the group may not patch it."""
    doctor_as_patient = make_user(Role.DOCTOR)
    member_add(group=care_group, user=doctor_as_patient, user_role=Role.PATIENT)
    patient_as_doctor = make_user(Role.PATIENT)
    member_add(group=care_group, user=patient_as_doctor, user_role=Role.DOCTOR)

    refused = client_for(doctor_as_patient).patch(f"/api/group/{care_group.group_id}", {"ai_enabled": False},
                                                  format="json")
    allowed = client_for(patient_as_doctor).patch(f"/api/group/{care_group.group_id}", {"ai_enabled": False},
                                                  format="json")

    assert_error(refused, 403, "PERMISSION_DENIED")
    assert allowed.status_code == 200 and allowed.json()["ai_enabled"] is False
