"""Who may open `/ws/{user_id}`: the token or session decides, the path must name that user, and a browser's
Origin must be one of ours. An accepted connection starts with the `connected` frame."""
from datetime import datetime, timedelta, timezone

import pytest
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from chat.services import message_send
from groups.services import group_create
from tests.support.api import access_token
from tests.support.ws import communicator, connected, handshake, receive, run
from users.models import Role
from users.services import user_tokens, user_update

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_channel_layer")]

PASSWORD = "correct-horse-battery-9"


@pytest.fixture
def web_user(make_user, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # logging in fast
    return make_user(Role.DOCTOR, password=PASSWORD)


def refused(comm) -> int | None:
    """The close code of a refused handshake (None when it was accepted)."""
    async def scenario():
        accepted, detail = await handshake(comm)
        return None if accepted else detail

    return run(scenario)


def accepted_as(comm) -> dict:
    """The `connected` frame of an accepted handshake."""
    async def scenario():
        accepted, detail = await handshake(comm)
        assert accepted, f"refused with {detail}"
        try:
            return await receive(comm)
        finally:
            await comm.disconnect()

    return run(scenario)


def session_cookie(user) -> str:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return f"sessionid={client.cookies['sessionid'].value}"


def from_page(path_user_id: str, *, origin: str, host: str = "localhost:8000", scheme: str | None = None,
              forwarded_proto: str | None = None, **kwargs):
    """A handshake as a browser makes it: the page's Origin, and the Host (and scheme) it was made to."""
    comm = communicator(path_user_id, origin=origin, **kwargs)
    comm.scope["headers"].append((b"host", host.encode()))
    if forwarded_proto is not None:  # what a TLS-terminating proxy adds
        comm.scope["headers"].append((b"x-forwarded-proto", forwarded_proto.encode()))
    if scheme is not None:  # daphne serving TLS itself
        comm.scope["scheme"] = scheme
    return comm


def test_no_credentials_are_refused(patient):
    assert refused(communicator(patient.user_id)) == 4401
    assert refused(communicator(patient.user_id, token="")) == 4401


def test_a_token_that_is_not_a_jwt_is_refused(patient):
    assert refused(communicator(patient.user_id, token="not-a-token")) == 4401


def test_a_token_signed_with_another_key_is_refused(patient):
    token = access_token(patient)
    header, payload, signature = token.split(".")
    forged = ".".join([header, payload, ("A" if signature[0] != "A" else "B") + signature[1:]])
    assert refused(communicator(patient.user_id, token=forged)) == 4401


def test_an_expired_token_is_refused(patient):
    token = AccessToken.for_user(patient)
    token.set_exp(from_time=datetime.now(timezone.utc) - timedelta(hours=2), lifetime=timedelta(hours=1))
    assert refused(communicator(patient.user_id, token=str(token))) == 4401


def test_a_refresh_token_is_not_an_access_token(patient):
    assert refused(communicator(patient.user_id, token=user_tokens(user=patient)["refresh"])) == 4401


def test_the_path_must_name_the_authenticated_user(patient, doctor):
    assert refused(communicator(doctor.user_id, token=access_token(patient))) == 4403
    assert refused(communicator("user_doesnotexist", token=access_token(patient))) == 4403


def test_a_deactivated_user_is_refused(patient):
    token = access_token(patient)
    user_update(user=patient, is_active=False)
    assert refused(communicator(patient.user_id, token=token)) == 4403


@pytest.mark.parametrize("origin", [
    "http://evil.example", "https://localhost.evil.example", "null", "not an origin",
    "http://localhost:9999",  # another service on the same machine
    "https://localhost:8000",  # the right port, but the page was not served over TLS
    "http://127.0.0.1:8000",  # one of our names, but not the one this handshake was made to
])
def test_a_foreign_origin_is_refused_even_with_a_valid_token(patient, origin):
    assert refused(from_page(patient.user_id, token=access_token(patient), origin=origin, host="localhost:8000"))


@pytest.mark.parametrize("origin, host, how", [
    ("http://localhost:8000", "localhost:8000", {}),
    ("http://127.0.0.1:8000", "127.0.0.1:8000", {}),
    ("http://[::1]:8000", "[::1]:8000", {}),
    ("http://localhost", "localhost", {}),
    ("https://localhost", "localhost", {"scheme": "wss"}),
    ("https://localhost", "localhost", {"forwarded_proto": "https"}),
])
def test_our_own_origin_is_accepted(patient, origin, host, how):
    hello = accepted_as(from_page(patient.user_id, token=access_token(patient), origin=origin, host=host, **how))
    assert hello["type"] == "connected" and hello["user_id"] == patient.user_id


@pytest.mark.parametrize("how", [{"scheme": "wss"}, {"forwarded_proto": "https"}])
def test_a_plain_http_page_cannot_open_the_tls_socket(patient, how):
    assert refused(from_page(patient.user_id, token=access_token(patient), origin="http://localhost",
                             host="localhost", **how))


def test_a_host_we_do_not_serve_is_refused_even_when_origin_and_host_agree(patient):
    # A rebound DNS name pointing at this server: the page and the handshake are both evil.example's.
    assert refused(from_page(patient.user_id, token=access_token(patient), origin="http://evil.example:8000",
                             host="evil.example:8000"))


def test_a_cors_origin_must_match_in_scheme_host_and_port(patient, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://care.example.org"]
    token = access_token(patient)
    hello = accepted_as(from_page(patient.user_id, token=token, origin="https://care.example.org"))
    assert hello["user_id"] == patient.user_id
    for origin in ("http://care.example.org", "https://care.example.org:8443", "https://evil.care.example.org"):
        assert refused(from_page(patient.user_id, token=token, origin=origin)), origin


def test_no_origin_is_judged_by_the_token_alone(patient):
    hello = accepted_as(communicator(patient.user_id, token=access_token(patient)))
    assert hello["type"] == "connected" and hello["user_id"] == patient.user_id


def test_the_session_cookie_authenticates(web_user):
    hello = accepted_as(from_page(web_user.user_id, cookie=session_cookie(web_user), origin="http://localhost:8000"))
    assert hello["type"] == "connected" and hello["user_id"] == web_user.user_id


def test_the_session_cookie_does_not_open_another_users_socket(web_user, patient):
    assert refused(from_page(patient.user_id, cookie=session_cookie(web_user),
                             origin="http://localhost:8000")) == 4403


def test_a_foreign_page_cannot_ride_the_session_cookie(web_user):
    assert refused(from_page(web_user.user_id, cookie=session_cookie(web_user), origin="http://evil.example"))


def test_a_bad_token_is_not_rescued_by_a_good_session(web_user):
    assert refused(from_page(web_user.user_id, token="not-a-token", cookie=session_cookie(web_user),
                             origin="http://localhost:8000")) == 4401


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
        [{"group_id": quiet_group.group_id, "last_seq": 3, "last_read_seq": 0, "unread_count": 0},
         {"group_id": other.group_id, "last_seq": 1, "last_read_seq": 0, "unread_count": 0}],
        key=lambda g: g["group_id"])  # the doctor's own messages are not unread
    assert patient_hello["groups"] == [{"group_id": quiet_group.group_id, "last_seq": 3, "last_read_seq": 0,
                                        "unread_count": 3}]
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
