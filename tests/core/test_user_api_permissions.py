"""Only staff create users, change roles and mint tokens; the refusal stores nothing."""
import pytest

from tests.support.api import assert_error, counts
from users.models import Role, User

NON_STAFF = [Role.DOCTOR, Role.PATIENT, Role.AI_ASSISTANT]


@pytest.mark.parametrize("role", NON_STAFF)
def test_non_staff_cannot_create_users(make_user, client_for, role):
    caller = make_user(role)
    before = counts()

    response = client_for(caller).post("/api/user/create", {"username": "sneaky", "user_role": "DOCTOR"},
                                       format="json")

    assert_error(response, 403, "PERMISSION_DENIED")
    assert counts() == before
    assert not User.objects.filter(username="sneaky").exists()


@pytest.mark.parametrize("role", NON_STAFF)
def test_non_staff_cannot_change_roles(make_user, client_for, role):
    caller = make_user(role)

    response = client_for(caller).put(f"/api/user/{caller.user_id}/role", {"user_role": "DOCTOR"}, format="json")

    assert_error(response, 403, "PERMISSION_DENIED")
    caller.refresh_from_db()
    assert caller.user_role == role


@pytest.mark.parametrize("role", NON_STAFF)
def test_non_staff_cannot_mint_tokens_even_for_themselves(make_user, client_for, role):
    caller = make_user(role)

    response = client_for(caller).post(f"/api/user/{caller.user_id}/token")

    assert_error(response, 403, "PERMISSION_DENIED")


def test_a_staff_flag_cannot_be_granted_through_user_create(staff, client_for):
    response = client_for(staff).post(
        "/api/user/create", {"username": "newbie", "user_role": "PATIENT", "is_staff": True}, format="json")

    assert response.status_code == 201
    assert not User.objects.get(username="newbie").is_staff
