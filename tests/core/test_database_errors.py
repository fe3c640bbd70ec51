"""One rule for database errors on every transport: the database being out of reach is SERVICE_UNAVAILABLE (HTTP
503, or the frame's error code), so the client retries; anything else (a constraint, bad data, a bug) is an
INTERNAL_ERROR, never a "try again" that would be retried for ever."""
from unittest import mock

import pytest
from django.db import DatabaseError, DataError, IntegrityError, InterfaceError, OperationalError

from chat import consumers
from chat import views as chat_views
from imserver.errors import database_unavailable
from tests.support.ws import ask, connected, run

OUT_OF_REACH = [OperationalError("server closed the connection"), InterfaceError("connection already closed"),
                DatabaseError("connection lost")]
NOT_A_RETRY = [IntegrityError("duplicate key"), DataError("value too long")]
CASES = [(exc, "SERVICE_UNAVAILABLE", 503) for exc in OUT_OF_REACH] + \
        [(exc, "INTERNAL_ERROR", 500) for exc in NOT_A_RETRY]
IDS = [type(exc).__name__ for exc, _, _ in CASES]


@pytest.mark.parametrize("exc", OUT_OF_REACH + NOT_A_RETRY, ids=lambda e: type(e).__name__)
def test_the_classifier_names_only_connection_errors(exc):
    assert database_unavailable(exc) is (exc in OUT_OF_REACH)


@pytest.mark.django_db
@pytest.mark.parametrize("exc,code,status", CASES, ids=IDS)
def test_http_answers_by_the_rule(exc, code, status, care_group, doctor, client_for):
    with mock.patch.object(chat_views, "message_send", side_effect=exc):
        answer = client_for(doctor).post("/api/message/send", {"group_id": care_group.group_id, "content": "Hi"},
                                         format="json")

    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("exc,code,status", CASES, ids=IDS)
def test_a_websocket_frame_answers_by_the_rule(exc, code, status, care_group, doctor):
    async def scenario():
        async with connected(doctor) as ws:
            return await ask(ws, {"type": "send_message", "group_id": care_group.group_id, "content": "Hi",
                                  "client_msg_id": "c-1"})

    with mock.patch.object(consumers, "message_send", side_effect=exc):
        error = run(scenario)

    assert error == {"type": "error", "code": code, "message": error["message"], "client_msg_id": "c-1"}
