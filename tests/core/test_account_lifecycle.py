"""Deactivation, reactivation and logout through every interface: the API, the command, the admin; an open
connection of a deactivated user is closed with 4403 and one whose token expires with 4401."""
from datetime import timedelta

import pytest
from django.core.management import call_command
from rest_framework_simplejwt.tokens import AccessToken

from tests.support.api import assert_error
from tests.support.ws import connected, db, run
from users.models import Role, User
from users.services import user_deactivate, user_tokens

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_channel_layer")]


def _closed_with(comm) -> int:
    async def read():
        output = await comm.receive_output(timeout=3)
        while output["type"] != "websocket.close":
            output = await comm.receive_output(timeout=3)
        return output.get("code")

    return read()


def test_staff_deactivate_and_reactivate_over_the_api(patient, staff, client_for):
    tokens = user_tokens(user=patient)
    answer = client_for(staff).post(f"/api/user/{patient.user_id}/deactivate")
    assert answer.status_code == 200 and answer.json()["is_active"] is False
    assert_error(client_for(patient).get("/api/user/me"), 401, "NOT_AUTHENTICATED")
    assert_error(client_for().post("/api/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json"),
                 401, "NOT_AUTHENTICATED")
    assert_error(client_for(staff).post(f"/api/user/{patient.user_id}/token"), 409, "CONFLICT")
    answer = client_for(staff).post(f"/api/user/{patient.user_id}/reactivate")
    assert answer.status_code == 200 and answer.json()["is_active"] is True
    assert client_for(patient).get("/api/user/me").status_code == 200


def test_only_staff_may_deactivate(patient, doctor, client_for):
    assert_error(client_for(doctor).post(f"/api/user/{patient.user_id}/deactivate"), 403, "PERMISSION_DENIED")
    assert_error(client_for(patient).post(f"/api/user/{patient.user_id}/deactivate"), 403, "PERMISSION_DENIED")
    assert User.objects.get(pk=patient.pk).is_active


def test_an_open_connection_is_closed_with_4403_when_its_user_is_deactivated(patient):
    async def scenario():
        async with connected(patient) as ws:
            await db(user_deactivate)(user=patient)
            return await _closed_with(ws)

    assert run(scenario) == 4403


def test_the_command_deactivates_and_closes_the_connections(patient, capsys):
    async def scenario():
        async with connected(patient) as ws:
            await db(call_command)("user_deactivate", patient.username)
            return await _closed_with(ws)

    assert run(scenario) == 4403
    assert "deactivated" in capsys.readouterr().out
    call_command("user_deactivate", patient.user_id, "--reactivate")
    assert User.objects.get(pk=patient.pk).is_active


def test_the_admin_action_deactivates(patient, admin_browser):
    answer = admin_browser.post("/admin/users/user/", {"action": "deactivate", "_selected_action": [patient.pk]})
    assert answer.status_code == 302
    assert not User.objects.get(pk=patient.pk).is_active


def test_an_open_connection_is_closed_with_4401_when_its_access_token_expires(patient):
    token = AccessToken.for_user(patient)
    token.set_exp(lifetime=timedelta(seconds=1))

    async def scenario():
        async with connected(patient, token=str(token)) as ws:
            return await _closed_with(ws)

    assert run(scenario) == 4401


def test_logout_refuses_the_refresh_token(patient, client_for, make_user):
    tokens = user_tokens(user=patient)
    other = user_tokens(user=make_user(Role.PATIENT))
    assert_error(client_for(patient).post("/api/auth/logout", {"refresh": other["refresh"]}, format="json"),
                 403, "PERMISSION_DENIED")
    assert_error(client_for(patient).post("/api/auth/logout", {"refresh": "junk"}, format="json"),
                 401, "NOT_AUTHENTICATED")
    assert client_for(patient).post("/api/auth/logout", {"refresh": tokens["refresh"]},
                                    format="json").status_code == 204
    assert_error(client_for().post("/api/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json"),
                 401, "NOT_AUTHENTICATED")
    assert client_for().post("/api/auth/token/refresh", {"refresh": other["refresh"]},
                             format="json").status_code == 200


def test_a_deleted_users_refresh_token_is_refused_not_a_500(patient, client_for):
    tokens = user_tokens(user=patient)
    User.objects.filter(pk=patient.pk).delete()
    assert_error(client_for().post("/api/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json"),
                 401, "NOT_AUTHENTICATED")
