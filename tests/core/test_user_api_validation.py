"""Bad user input: 400 VALIDATION_ERROR, 404 NOT_FOUND or 409 CONFLICT, and no user stored or changed."""
import pytest

from tests.support.api import assert_error, counts

BAD_CREATE_BODIES = {
    "empty body": {},
    "no username": {"user_role": "PATIENT"},
    "no role": {"username": "zhang"},
    "unknown role": {"username": "zhang", "user_role": "NURSE"},
    "lower-case role": {"username": "zhang", "user_role": "patient"},
    "role not a string": {"username": "zhang", "user_role": ["PATIENT"]},
    "username a list": {"username": ["zhang"], "user_role": "PATIENT"},
    "username an object": {"username": {"name": "zhang"}, "user_role": "PATIENT"},
    "username empty": {"username": "", "user_role": "PATIENT"},
    "username with spaces": {"username": "zhang san", "user_role": "PATIENT"},
    "username too long": {"username": "z" * 65, "user_role": "PATIENT"},
    "password empty": {"username": "zhang", "user_role": "PATIENT", "password": ""},
    "password too short": {"username": "zhang", "user_role": "PATIENT", "password": "abc"},
    "password too common": {"username": "zhang", "user_role": "PATIENT", "password": "password123"},
}


@pytest.mark.usefixtures("fast_hasher")
@pytest.mark.parametrize("body", BAD_CREATE_BODIES.values(), ids=BAD_CREATE_BODIES.keys())
def test_bad_user_create_is_a_validation_error_and_stores_nothing(staff, client_for, body):
    before = counts()

    response = client_for(staff).post("/api/user/create", body, format="json")

    assert_error(response, 400, "VALIDATION_ERROR")
    assert counts() == before


def test_unknown_role_names_the_field(staff, client_for):
    response = client_for(staff).post("/api/user/create", {"username": "zhang", "user_role": "NURSE"}, format="json")

    assert "user_role" in assert_error(response, 400, "VALIDATION_ERROR")["details"]


def test_username_exactly_at_the_limit_passes(staff, client_for):
    response = client_for(staff).post("/api/user/create", {"username": "z" * 64, "user_role": "PATIENT"},
                                      format="json")

    assert response.status_code == 201


def test_duplicate_username_is_a_conflict(staff, patient, client_for):
    before = counts()

    response = client_for(staff).post("/api/user/create", {"username": patient.username, "user_role": "DOCTOR"},
                                      format="json")

    assert_error(response, 409, "CONFLICT")
    assert counts() == before
    patient.refresh_from_db()
    assert patient.user_role == "PATIENT"


@pytest.mark.parametrize("body", [{}, {"user_role": "NURSE"}, {"user_role": None}, {"user_role": ["DOCTOR"]}])
def test_bad_role_change_is_a_validation_error_and_changes_nothing(staff, patient, client_for, body):
    response = client_for(staff).put(f"/api/user/{patient.user_id}/role", body, format="json")

    assert_error(response, 400, "VALIDATION_ERROR")
    patient.refresh_from_db()
    assert patient.user_role == "PATIENT"


@pytest.mark.parametrize("method,path,body", [
    ("get", "/api/user/user_doesnotexist", None),
    ("put", "/api/user/user_doesnotexist/role", {"user_role": "DOCTOR"}),
    ("post", "/api/user/user_doesnotexist/token", None),
])
def test_unknown_user_id_is_not_found(staff, client_for, method, path, body):
    assert_error(getattr(client_for(staff), method)(path, body, format="json"), 404, "NOT_FOUND")
