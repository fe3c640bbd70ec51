"""Every failure answers `{"error": {"code", "message", "details"}}` with the matching status, never a traceback."""
import pytest

from chat.models import Message
from tests.support.api import assert_error, counts


def test_unknown_path_is_a_json_not_found(doctor, client_for):
    response = client_for(doctor).get("/api/no/such/thing")

    assert response["Content-Type"].startswith("application/json")
    assert_error(response, 404, "NOT_FOUND")


@pytest.mark.parametrize("raw", ["{", "{'single': 'quotes'}", "\x00\x01"])
def test_malformed_json_on_any_endpoint_is_a_validation_error(staff, care_group, client_for, raw):
    client = client_for(staff)
    before = counts()

    for path in ("/api/user/create", "/api/group/create", f"/api/group/{care_group.group_id}/members",
                 "/api/message/send", "/api/auth/token"):
        assert_error(client.post(path, data=raw, content_type="application/json"), 400, "VALIDATION_ERROR")
    assert counts() == before


def test_malformed_json_details_are_a_list_like_any_validation_error(doctor, client_for):
    error = assert_error(client_for(doctor).post("/api/message/send", data="{", content_type="application/json"),
                         400, "VALIDATION_ERROR")

    assert isinstance(error["details"]["non_field_errors"], list)
    assert error["message"] == error["details"]["non_field_errors"][0]


def test_malformed_json_in_a_patch_changes_nothing(care_group, doctor, client_for):
    response = client_for(doctor).patch(f"/api/group/{care_group.group_id}", data='{"ai_enabled": fal',
                                        content_type="application/json")

    assert_error(response, 400, "VALIDATION_ERROR")
    care_group.refresh_from_db()
    assert care_group.ai_enabled is True


def test_wrong_method_is_refused_in_the_contract_format(care_group, doctor, client_for):
    response = client_for(doctor).delete(f"/api/group/{care_group.group_id}")

    assert response.status_code == 405
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert care_group.__class__.objects.filter(pk=care_group.pk).exists()


def test_unsupported_content_type_is_refused_and_stores_nothing(care_group, doctor, client_for):
    response = client_for(doctor).post("/api/message/send", data="group_id=x", content_type="text/plain")

    assert response.status_code == 415
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert not Message.objects.exists()


def test_validation_error_message_is_human_readable(staff, client_for):
    error = assert_error(client_for(staff).post("/api/user/create", {"user_role": "PATIENT"}, format="json"),
                         400, "VALIDATION_ERROR")

    assert error["message"].startswith("username")
    assert "username" in error["details"]
