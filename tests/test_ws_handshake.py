"""Who may open `/ws/{user_id}`: the token or session decides, the path must name that user, and a browser's
Origin must be one of ours. An accepted connection starts with the `connected` frame."""
from datetime import datetime, timedelta, timezone

import pytest
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from chat.services import message_send
from groups.services import group_create
from tests.ws_support import (  # noqa: F401 - fixtures
    access_token,
    communicator,
    connected,
    fresh_channel_layer,
    handshake,
    quiet_group,
    run,
)
from users.models import Role
from users.services import user_tokens, user_update

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct-horse-battery-9"


@pytest.fixture
def web_user(make_user, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # logging in fast
    return make_user(Role.DOCTOR, password=PASSWORD)


def refused(comm) -> bool:
    async def scenario():
        accepted, _ = await handshake(comm)
        return not accepted

    return run(scenario)


def accepted_as(comm) -> dict:
    """The `connected` frame of an accepted handshake."""
    async def scenario():
        accepted, detail = await handshake(comm)
        assert accepted, f"refused with {detail}"
        try:
            return await comm.receive_json_from(timeout=2)
        finally:
            await comm.disconnect()

    return run(scenario)


def session_cookie(user) -> str:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return f"sessionid={client.cookies['sessionid'].value}"


def test_no_credentials_are_refused(patient):
    assert refused(communicator(patient.user_id))
    assert refused(communicator(patient.user_id, token=""))


def test_a_token_that_is_not_a_jwt_is_refused(patient):
    assert refused(communicator(patient.user_id, token="not-a-token"))


def test_a_token_signed_with_another_key_is_refused(patient):
    token = access_token(patient)
    header, payload, signature = token.split(".")
    forged = ".".join([header, payload, ("A" if signature[0] != "A" else "B") + signature[1:]])
    assert refused(communicator(patient.user_id, token=forged))


def test_an_expired_token_is_refused(patient):
    token = AccessToken.for_user(patient)
    token.set_exp(from_time=datetime.now(timezone.utc) - timedelta(hours=2), lifetime=timedelta(hours=1))
    assert refused(communicator(patient.user_id, token=str(token)))


def test_a_refresh_token_is_not_an_access_token(patient):
    assert refused(communicator(patient.user_id, token=user_tokens(user=patient)["refresh"]))


def test_the_path_must_name_the_authenticated_user(patient, doctor):
    assert refused(communicator(doctor.user_id, token=access_token(patient)))
    assert refused(communicator("user_doesnotexist", token=access_token(patient)))


def test_a_deactivated_user_is_refused(patient):
    token = access_token(patient)
    user_update(user=patient, is_active=False)
    assert refused(communicator(patient.user_id, token=token))


@pytest.mark.parametrize("origin", ["http://evil.example", "https://localhost.evil.example", "null"])
def test_a_foreign_origin_is_refused_even_with_a_valid_token(patient, origin):
    assert refused(communicator(patient.user_id, token=access_token(patient), origin=origin))


@pytest.mark.parametrize("origin", ["http://localhost:8000", "http://127.0.0.1:8000", "https://localhost"])
def test_our_own_origin_is_accepted(patient, origin):
    hello = accepted_as(communicator(patient.user_id, token=access_token(patient), origin=origin))
    assert hello["type"] == "connected" and hello["user_id"] == patient.user_id


def test_no_origin_is_judged_by_the_token_alone(patient):
    hello = accepted_as(communicator(patient.user_id, token=access_token(patient)))
    assert hello["type"] == "connected" and hello["user_id"] == patient.user_id


def test_the_session_cookie_authenticates(web_user):
    hello = accepted_as(communicator(web_user.user_id, cookie=session_cookie(web_user), origin="http://localhost:8000"))
    assert hello["type"] == "connected" and hello["user_id"] == web_user.user_id


def test_the_session_cookie_does_not_open_another_users_socket(web_user, patient):
    assert refused(communicator(patient.user_id, cookie=session_cookie(web_user), origin="http://localhost:8000"))


def test_a_foreign_page_cannot_ride_the_session_cookie(web_user):
    assert refused(communicator(web_user.user_id, cookie=session_cookie(web_user), origin="http://evil.example"))


def test_a_bad_token_is_not_rescued_by_a_good_session(web_user):
    assert refused(communicator(web_user.user_id, token="not-a-token", cookie=session_cookie(web_user),
                                origin="http://localhost:8000"))


def test_connected_lists_the_users_groups_with_their_last_seq(doctor, patient, quiet_group):
    other = group_create(creator=doctor, group_name="Night shift", ai_enabled=False)
    for text in ("one", "two", "three"):
        message_send(sender=doctor, group=quiet_group, content=text)
    message_send(sender=doctor, group=other, content="hello")
    before = datetime.now(timezone.utc)

    async def scenario():
        async with connected(doctor) as ws_doctor, connected(patient) as ws_patient:
            return ws_doctor.hello, ws_patient.hello

    doctor_hello, patient_hello = run(scenario)
    assert doctor_hello["user_id"] == doctor.user_id
    assert sorted(doctor_hello["groups"], key=lambda g: g["group_id"]) == sorted(
        [{"group_id": quiet_group.group_id, "last_seq": 3}, {"group_id": other.group_id, "last_seq": 1}],
        key=lambda g: g["group_id"])
    assert patient_hello["groups"] == [{"group_id": quiet_group.group_id, "last_seq": 3}]
    server_time = datetime.fromisoformat(doctor_hello["server_time"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=5) <= server_time <= datetime.now(timezone.utc) + timedelta(seconds=5)


def test_connected_for_a_user_in_no_group(outsider):
    async def scenario():
        async with connected(outsider) as ws:
            return ws.hello

    hello = run(scenario)
    assert hello["type"] == "connected" and hello["user_id"] == outsider.user_id
    assert hello["groups"] == []
    assert set(hello) == {"type", "user_id", "groups", "server_time"}
