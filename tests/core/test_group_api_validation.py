"""Bad group input: 400 VALIDATION_ERROR or 404 NOT_FOUND in the contract's format, and nothing stored."""
import pytest

from groups.models import ChatGroup
from tests.support.api import assert_error, counts

BAD_CREATE_BODIES = {
    "empty body": {},
    "name empty": {"group_name": ""},
    "name only spaces": {"group_name": "   "},
    "name a list": {"group_name": ["Ward"]},
    "name too long": {"group_name": "x" * 129},
    "description a list": {"group_name": "Ward", "description": ["x"]},
    "members not a list": {"group_name": "Ward", "members": "user_1"},
    "member not an object": {"group_name": "Ward", "members": ["user_1"]},
    "member without role": {"group_name": "Ward", "members": [{"user_id": "{patient}"}]},
    "member without id": {"group_name": "Ward", "members": [{"user_role": "PATIENT"}]},
    "member with unknown role": {"group_name": "Ward", "members": [{"user_id": "{patient}", "user_role": "NURSE"}]},
    "member listed twice": {"group_name": "Ward", "members": [{"user_id": "{patient}", "user_role": "PATIENT"},
                                                             {"user_id": "{patient}", "user_role": "DOCTOR"}]},
}


def _fill(value, patient):
    if isinstance(value, str):
        return value.replace("{patient}", patient.user_id)
    if isinstance(value, list):
        return [_fill(v, patient) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, patient) for k, v in value.items()}
    return value


@pytest.mark.parametrize("body", BAD_CREATE_BODIES.values(), ids=BAD_CREATE_BODIES.keys())
def test_bad_group_create_is_a_validation_error_and_stores_nothing(doctor, patient, client_for, body):
    before = counts()

    response = client_for(doctor).post("/api/group/create", _fill(body, patient), format="json")

    assert_error(response, 400, "VALIDATION_ERROR")
    assert counts() == before


def test_group_create_with_an_unknown_member_is_not_found_and_stores_nothing(doctor, patient, client_for):
    before = counts()
    members = [{"user_id": patient.user_id, "user_role": "PATIENT"},
               {"user_id": "user_doesnotexist", "user_role": "PATIENT"}]

    response = client_for(doctor).post("/api/group/create", {"group_name": "Ward", "members": members},
                                       format="json")

    error = assert_error(response, 404, "NOT_FOUND")
    assert error["details"].get("user_id") == "user_doesnotexist"
    assert counts() == before


@pytest.mark.parametrize("body", [
    {"ai_enabled": "perhaps"}, {"ai_enabled": [True]}, {"group_name": ""}, {"group_name": "x" * 129},
    {"group_name": None}, {"description": ["x"]},
])
def test_bad_patch_is_a_validation_error_and_changes_nothing(care_group, doctor, client_for, body):
    response = client_for(doctor).patch(f"/api/group/{care_group.group_id}", body, format="json")

    assert_error(response, 400, "VALIDATION_ERROR")
    stored = ChatGroup.objects.get(pk=care_group.pk)
    assert (stored.group_name, stored.description, stored.ai_enabled) == ("Ward 7", "", True)


@pytest.mark.parametrize("method,path,body", [
    ("get", "/api/group/group_doesnotexist", None),
    ("patch", "/api/group/group_doesnotexist", {"ai_enabled": False}),
    ("get", "/api/group/group_doesnotexist/members", None),
    ("post", "/api/group/group_doesnotexist/members", {"user_id": "{patient}", "user_role": "PATIENT"}),
    ("delete", "/api/group/group_doesnotexist/members/{patient}", None),
])
def test_unknown_group_id_is_not_found(staff, patient, client_for, method, path, body):
    before = counts()

    response = getattr(client_for(staff), method)(_fill(path, patient), _fill(body, patient), format="json")

    assert_error(response, 404, "NOT_FOUND")
    assert counts() == before


def test_put_on_a_group_is_not_allowed(care_group, doctor, client_for):
    response = client_for(doctor).put(f"/api/group/{care_group.group_id}", {"group_name": "X"}, format="json")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert ChatGroup.objects.get(pk=care_group.pk).group_name == "Ward 7"
