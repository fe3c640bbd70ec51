"""The user API: staff create users and change roles; any user reads itself and others."""
import pytest

from users.models import User

USER_FIELDS = {"user_id", "username", "user_role", "created_at", "updated_at"}


@pytest.mark.parametrize("path", ["/api/user/create", "/api/user/create/"])
def test_staff_creates_a_user_without_password(staff, client_for, path):
    response = client_for(staff).post(path, {"username": "zhang", "user_role": "PATIENT"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == USER_FIELDS
    assert body["user_id"].startswith("user_") and body["username"] == "zhang" and body["user_role"] == "PATIENT"
    stored = User.objects.get(user_id=body["user_id"])
    assert stored.username == "zhang" and not stored.has_usable_password() and not stored.is_staff


@pytest.mark.usefixtures("fast_hasher")
def test_staff_creates_a_user_with_password_who_can_then_log_in(staff, client_for):
    response = client_for(staff).post(
        "/api/user/create", {"username": "dr_wu", "user_role": "DOCTOR", "password": "stethoscope-42"}, format="json")

    assert response.status_code == 201, response.content
    assert "password" not in response.json()
    login = client_for().post("/api/auth/token", {"username": "dr_wu", "password": "stethoscope-42"}, format="json")
    assert login.status_code == 200
    assert login.json()["user"]["user_id"] == response.json()["user_id"]
    assert login.json()["user"]["user_role"] == "DOCTOR"


@pytest.mark.parametrize("path", ["/api/user/me", "/api/user/me/"])
def test_me_is_the_caller(patient, client_for, path):
    response = client_for(patient).get(path)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == USER_FIELDS
    assert body["user_id"] == patient.user_id and body["username"] == patient.username
    assert body["user_role"] == "PATIENT"


@pytest.mark.parametrize("path", ["/api/user/{}", "/api/user/{}/"])
def test_any_user_reads_another_user(patient, doctor, client_for, path):
    response = client_for(patient).get(path.format(doctor.user_id))

    assert response.status_code == 200
    assert response.json()["user_id"] == doctor.user_id and response.json()["user_role"] == "DOCTOR"
    assert set(response.json()) == USER_FIELDS


@pytest.mark.parametrize("path", ["/api/user/{}/role", "/api/user/{}/role/"])
def test_staff_changes_a_users_role(staff, patient, client_for, path):
    response = client_for(staff).put(path.format(patient.user_id), {"user_role": "DOCTOR"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["user_id"] == patient.user_id and response.json()["user_role"] == "DOCTOR"
    patient.refresh_from_db()
    assert patient.user_role == "DOCTOR"
    assert client_for(patient).get("/api/user/me").json()["user_role"] == "DOCTOR"


def test_a_role_change_leaves_in_group_roles_alone(staff, patient, care_group, client_for):
    client_for(staff).put(f"/api/user/{patient.user_id}/role", {"user_role": "DOCTOR"}, format="json")

    members = client_for(staff).get(f"/api/group/{care_group.group_id}/members").json()["members"]
    assert {m["user_id"]: m["user_role"] for m in members}[patient.user_id] == "PATIENT"
