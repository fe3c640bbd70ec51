"""The group API: create with members, list the caller's groups (staff: all), read, patch."""
import pytest

from groups.models import ChatGroup, GroupMember
from groups.services import group_create
from users.models import Role

GROUP_FIELDS = {"group_id", "group_name", "description", "created_by", "ai_enabled", "ai_mode", "ai_paused",
                "member_count", "last_seq", "last_read_seq", "unread_count", "created_at", "updated_at"}


def roles_of(group_id):
    return dict(GroupMember.objects.filter(group__group_id=group_id).values_list("user__user_id", "user_role"))


@pytest.mark.parametrize("path", ["/api/group/create", "/api/group/create/"])
def test_doctor_creates_a_group_and_joins_it_as_doctor(doctor, client_for, path):
    response = client_for(doctor).post(path, {"group_name": "Cardiology", "description": "Ward 3"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == GROUP_FIELDS
    assert body["group_id"].startswith("group_")
    assert body["group_name"] == "Cardiology" and body["description"] == "Ward 3"
    assert body["created_by"] == doctor.user_id
    assert body["ai_enabled"] is True and body["member_count"] == 1 and body["last_seq"] == 0
    assert roles_of(body["group_id"]) == {doctor.user_id: "DOCTOR"}


def test_group_create_with_members_gives_each_their_in_group_role(doctor, patient, assistant, make_user,
                                                                 client_for):
    nurse_like = make_user(Role.PATIENT)  # a PATIENT user may hold another role inside a group
    members = [{"user_id": patient.user_id, "user_role": "PATIENT"},
               {"user_id": assistant.user_id, "user_role": "AI_ASSISTANT"},
               {"user_id": nurse_like.user_id, "user_role": "DOCTOR"}]

    response = client_for(doctor).post("/api/group/create", {"group_name": "Team", "members": members},
                                       format="json")

    assert response.status_code == 201, response.content
    assert response.json()["member_count"] == 4
    assert roles_of(response.json()["group_id"]) == {
        doctor.user_id: "DOCTOR", patient.user_id: "PATIENT", assistant.user_id: "AI_ASSISTANT",
        nurse_like.user_id: "DOCTOR"}


def test_creator_listed_among_members_still_joins_once_as_doctor(doctor, client_for):
    response = client_for(doctor).post(
        "/api/group/create",
        {"group_name": "Team", "members": [{"user_id": doctor.user_id, "user_role": "PATIENT"}]}, format="json")

    assert response.status_code == 201, response.content
    assert roles_of(response.json()["group_id"]) == {doctor.user_id: "DOCTOR"}


def test_staff_creates_a_group(staff, client_for):
    response = client_for(staff).post("/api/group/create", {"group_name": "Ops"}, format="json")

    assert response.status_code == 201
    assert response.json()["created_by"] == staff.user_id


@pytest.mark.parametrize("path", ["/api/group/", "/api/group"])
def test_list_shows_only_the_callers_groups_with_their_member_counts(patient, care_group, make_user, client_for,
                                                                   path):
    other_doctor = make_user(Role.DOCTOR)
    group_create(creator=other_doctor, group_name="Not yours")

    response = client_for(patient).get(path)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"groups", "total", "page", "page_size"}
    assert body["total"] == 1 and body["page"] == 1 and body["page_size"] == 20
    assert [g["group_id"] for g in body["groups"]] == [care_group.group_id]
    assert body["groups"][0]["member_count"] == 3  # every member, not only the caller
    assert set(body["groups"][0]) == GROUP_FIELDS


def test_outsider_lists_no_groups(outsider, care_group, client_for):
    body = client_for(outsider).get("/api/group/").json()

    assert body["groups"] == [] and body["total"] == 0


def test_staff_lists_every_group(staff, care_group, make_user, client_for):
    other = group_create(creator=make_user(Role.DOCTOR), group_name="Other")

    body = client_for(staff).get("/api/group/").json()

    assert body["total"] == 2
    assert [g["group_id"] for g in body["groups"]] == [other.group_id, care_group.group_id]  # newest first


def test_list_pages_through_the_callers_groups(doctor, client_for):
    made = [group_create(creator=doctor, group_name=f"G{i}").group_id for i in range(5)]
    newest_first = made[::-1]
    client = client_for(doctor)

    first = client.get("/api/group/?page=1&page_size=2").json()
    third = client.get("/api/group/?page=3&page_size=2").json()
    past_the_end = client.get("/api/group/?page=4&page_size=2").json()

    assert first["total"] == 5 and first["page"] == 1 and first["page_size"] == 2
    assert [g["group_id"] for g in first["groups"]] == newest_first[:2]
    assert [g["group_id"] for g in third["groups"]] == newest_first[4:]
    assert past_the_end["groups"] == [] and past_the_end["total"] == 5


def test_page_size_bounds_pass(doctor, client_for):
    group_create(creator=doctor, group_name="G")

    assert client_for(doctor).get("/api/group/?page_size=1").json()["page_size"] == 1
    assert client_for(doctor).get("/api/group/?page_size=100").json()["page_size"] == 100


@pytest.mark.parametrize("who", ["doctor", "patient", "assistant", "staff"])
def test_members_and_staff_read_the_group(care_group, client_for, request, who):
    response = client_for(request.getfixturevalue(who)).get(f"/api/group/{care_group.group_id}")

    assert response.status_code == 200
    body = response.json()
    assert body["group_id"] == care_group.group_id and body["group_name"] == "Ward 7"
    assert body["member_count"] == 3


def test_read_with_trailing_slash(care_group, doctor, client_for):
    assert client_for(doctor).get(f"/api/group/{care_group.group_id}/").status_code == 200


@pytest.mark.parametrize("path", ["/api/group/{}", "/api/group/{}/"])
def test_in_group_doctor_patches_name_description_and_ai_switch(care_group, doctor, client_for, path):
    response = client_for(doctor).patch(
        path.format(care_group.group_id),
        {"group_name": "Ward 8", "description": "moved", "ai_enabled": False}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["group_name"] == "Ward 8" and body["description"] == "moved" and body["ai_enabled"] is False
    care_group.refresh_from_db()
    assert (care_group.group_name, care_group.description, care_group.ai_enabled) == ("Ward 8", "moved", False)


def test_patch_changes_only_the_given_fields(care_group, doctor, client_for):
    response = client_for(doctor).patch(f"/api/group/{care_group.group_id}", {"ai_enabled": False}, format="json")

    assert response.status_code == 200
    assert response.json()["group_name"] == "Ward 7" and response.json()["ai_enabled"] is False
    back = client_for(doctor).patch(f"/api/group/{care_group.group_id}", {"ai_enabled": True}, format="json")
    assert back.json()["ai_enabled"] is True
    care_group.refresh_from_db()
    assert care_group.ai_enabled is True and care_group.group_name == "Ward 7"


def test_staff_patches_a_group_it_is_not_in(care_group, staff, client_for):
    response = client_for(staff).patch(f"/api/group/{care_group.group_id}", {"group_name": "Renamed"},
                                       format="json")

    assert response.status_code == 200
    assert ChatGroup.objects.get(pk=care_group.pk).group_name == "Renamed"


def test_patch_ignores_read_only_fields(care_group, doctor, client_for):
    response = client_for(doctor).patch(f"/api/group/{care_group.group_id}",
                                        {"last_seq": 99, "group_id": "group_x", "created_by": None}, format="json")

    assert response.status_code == 200
    care_group.refresh_from_db()
    assert care_group.last_seq == 0 and care_group.group_id == response.json()["group_id"]
    assert care_group.created_by == doctor
