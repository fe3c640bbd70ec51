"""No endpoint but /health*, /docs, /redoc, /api/schema and POST /api/auth/token* answers an anonymous caller."""
import pytest

from chat.services import message_send
from tests.support.api import assert_error, counts

PROTECTED = [
    ("post", "/api/user/create", {"username": "mallory", "user_role": "DOCTOR"}),
    ("get", "/api/user/me", None),
    ("get", "/api/user/{user_id}", None),
    ("put", "/api/user/{user_id}/role", {"user_role": "DOCTOR"}),
    ("post", "/api/user/{user_id}/token", None),
    ("post", "/api/group/create", {"group_name": "Mallory's"}),
    ("get", "/api/group/", None),
    ("get", "/api/group", None),
    ("get", "/api/group/{group_id}", None),
    ("patch", "/api/group/{group_id}", {"ai_enabled": False}),
    ("post", "/api/group/{group_id}/members", {"user_id": "{user_id}", "user_role": "PATIENT"}),
    ("get", "/api/group/{group_id}/members", None),
    ("delete", "/api/group/{group_id}/members/{user_id}", None),
    ("post", "/api/message/send", {"group_id": "{group_id}", "content": "hello"}),
    ("get", "/api/message/{message_id}", None),
    ("get", "/api/message/list?group_id={group_id}", None),
    ("get", "/api/message/list?group_id={group_id}&after_seq=0", None),
    ("get", "/api/ai/interactions", None),
    ("get", "/api/ai/interactions?group_id={group_id}", None),
    ("get", "/api/ai/interactions/air_doesnotexist", None),
    ("post", "/api/ai/test", {"message": "hello"}),
]


@pytest.mark.parametrize("method,path,body", PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED])
def test_anonymous_caller_is_refused(care_group, doctor, patient, client_for, method, path, body):
    message, _ = message_send(sender=doctor, group=care_group, content="hi")
    ids = {"user_id": patient.user_id, "group_id": care_group.group_id, "message_id": message.message_id}
    if body:
        body = {key: value.format(**ids) if isinstance(value, str) else value for key, value in body.items()}
    before = counts()

    response = getattr(client_for(), method)(path.format(**ids), body, format="json")

    assert_error(response, 401, "NOT_AUTHENTICATED")
    assert counts() == before
    care_group.refresh_from_db()
    patient.refresh_from_db()
    assert care_group.ai_enabled and patient.user_role == "PATIENT"


def test_refused_anonymous_caller_is_told_to_use_a_bearer_token(db, client_for):
    response = client_for().get("/api/user/me")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ["/health", "/health/", "/health/ready", "/api/schema", "/docs", "/redoc"])
def test_public_pages_answer_an_anonymous_caller(db, client_for, path):
    assert client_for().get(path).status_code == 200


def test_token_endpoints_answer_an_anonymous_caller(db, client_for):
    login = client_for().post("/api/auth/token", {"username": "x", "password": "y"}, format="json")
    refresh = client_for().post("/api/auth/token/refresh", {"refresh": "x"}, format="json")

    # Refused for bad credentials, not for being anonymous: the body says why.
    assert login.status_code == 401 and "credentials were not provided" not in login.json()["error"]["message"]
    assert refresh.status_code == 401 and "credentials were not provided" not in refresh.json()["error"]["message"]
