"""Per-user limits: HTTP send rate (429 with Retry-After), request body size, WebSocket connections per user."""
from chat.models import Message
from tests.support.api import access_token, assert_error
from tests.support.ws import communicator, connected, handshake, run


def test_http_sends_past_the_rate_get_429_with_retry_after(care_group, doctor, patient, client_for, settings):
    settings.IM_SEND_RATE = "3/min"
    dr = client_for(doctor)
    for i in range(3):
        assert dr.post("/api/message/send", {"group_id": care_group.group_id, "content": f"m{i}"},
                       format="json").status_code == 201
    refused = dr.post("/api/message/send", {"group_id": care_group.group_id, "content": "one too many"},
                      format="json")
    assert_error(refused, 429, "RATE_LIMITED")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert not Message.objects.filter(content="one too many").exists()
    # Others are not affected, and reading is not throttled.
    assert client_for(patient).post("/api/message/send", {"group_id": care_group.group_id, "content": "hi"},
                                    format="json").status_code == 201
    assert dr.get(f"/api/message/list?group_id={care_group.group_id}").status_code == 200


def test_a_body_past_the_limit_is_refused_with_413(care_group, doctor, client_for, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    settings.IM_MAX_MESSAGE_CHARS = 100_000
    answer = client_for(doctor).post("/api/message/send", {"group_id": care_group.group_id, "content": "x" * 5000},
                                     format="json")
    assert_error(answer, 413, "PAYLOAD_TOO_LARGE")
    assert Message.objects.count() == 0


def test_connections_past_the_per_user_limit_are_refused(transactional_db, doctor, patient, settings):
    settings.WS_MAX_CONNECTIONS_PER_USER = 2

    async def scenario():
        async with connected(doctor), connected(doctor):
            _, third = await handshake(communicator(doctor.user_id, token=access_token(doctor)))
            other = communicator(patient.user_id, token=access_token(patient))
            other_ok, _ = await handshake(other)
            await other.disconnect()
        async with connected(doctor):  # closing makes room again
            pass
        return third, other_ok

    third, other_ok = run(scenario)
    assert third == 4429 and other_ok is True
