"""A request does not read its user's row while the process's user cache holds it, and no change of the user
outlives its commit: deactivated, deleted or given another role, the next request sees it, on every process."""
import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.support.live import needs_real_services, wait_until
from users.models import Role
from users.services import user_deactivate, user_reactivate, user_role_change
from users.usercache import users

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="the user cache needs Redis for its invalidations")


def user_queries(queries) -> list[str]:
    return [q["sql"] for q in queries if 'FROM "users"' in q["sql"]]


@pytest.fixture
def listening(transactional_db):
    users._listen()
    wait_until(users.listening.is_set, timeout=10, what="the user cache's subscription")
    yield
    users.drop()


def test_a_second_request_reads_no_user_row(listening, patient, client_for):
    client = client_for(patient)
    assert client.get("/api/user/me").status_code == 200

    with CaptureQueriesContext(connection) as queries:
        answer = client.get("/api/user/me")

    assert answer.status_code == 200 and answer.json()["user_id"] == patient.user_id
    assert user_queries(queries) == []


def test_a_deactivated_user_is_refused_at_once(listening, patient, client_for):
    client = client_for(patient)
    assert client.get("/api/user/me").status_code == 200

    user_deactivate(user=patient)

    assert client.get("/api/user/me").status_code == 401
    user_reactivate(user=patient)
    assert client.get("/api/user/me").status_code == 200


def test_a_role_change_shows_at_once(listening, patient, client_for):
    client = client_for(patient)
    assert client.get("/api/user/me").json()["user_role"] == Role.PATIENT

    user_role_change(user=patient, user_role=Role.DOCTOR)

    assert client.get("/api/user/me").json()["user_role"] == Role.DOCTOR


def test_a_deleted_user_is_refused_at_once(listening, make_user, client_for):
    gone = make_user(Role.PATIENT)
    client = client_for(gone)
    assert client.get("/api/user/me").status_code == 200

    gone.delete()

    assert client.get("/api/user/me").status_code == 401


def test_without_its_subscription_the_cache_is_not_used(listening, patient, client_for):
    client = client_for(patient)
    client.get("/api/user/me")
    users.listening.clear()  # as when the subscription is lost, until the listener is back
    try:
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/api/user/me").status_code == 200
        assert len(user_queries(queries)) == 1
    finally:
        users.listening.set()


@pytest.mark.e2e
@needs_real_services()
@pytest.mark.django_db(transaction=True)
def test_a_change_made_elsewhere_reaches_every_server_before_it_returns(start_server, make_user):
    """Two servers hold the patient in their caches; the change is made in this process (as the admin or a
    `manage.py` command would): when the service returns, neither server lets the old user in."""
    import httpx
    from rest_framework_simplejwt.tokens import AccessToken

    patient = make_user(Role.PATIENT)
    servers = start_server("a"), start_server("b")
    bearer = {"Authorization": f"Bearer {AccessToken.for_user(patient)}"}

    def me(server):
        return httpx.get(f"{server.url}/api/user/me", headers=bearer, timeout=10)

    for server in servers:
        wait_until(lambda s=server: me(s).status_code == 200, what=f"{server.name} answering")
        for _ in range(3):  # kept by now, if the server's subscription is up
            assert me(server).json()["user_role"] == Role.PATIENT

    user_role_change(user=patient, user_role=Role.DOCTOR)
    assert [me(server).json()["user_role"] for server in servers] == [Role.DOCTOR, Role.DOCTOR]

    user_deactivate(user=patient)
    assert [me(server).status_code for server in servers] == [401, 401]
