"""Bad sends: 400 VALIDATION_ERROR, 404 NOT_FOUND or 413 PAYLOAD_TOO_LARGE, and no message, no seq used."""
import pytest

from chat.models import Message
from groups.models import ChatGroup
from tests.support.api import assert_error, counts

BAD_BODIES = {
    "empty body": {},
    "no group_id": {"content": "hi"},
    "no content": {"group_id": "{group}"},
    "content null": {"group_id": "{group}", "content": None},
    "content empty": {"group_id": "{group}", "content": ""},
    "content only spaces": {"group_id": "{group}", "content": "    "},
    "content only whitespace": {"group_id": "{group}", "content": " \n\t "},
    "content a number": {"group_id": "{group}", "content": 42},
    "content a boolean": {"group_id": "{group}", "content": True},
    "content a list": {"group_id": "{group}", "content": ["hi"]},
    "content an object": {"group_id": "{group}", "content": {"text": "hi"}},
    "group_id a list": {"group_id": ["{group}"], "content": "hi"},
    "unknown msg_type": {"group_id": "{group}", "content": "hi", "msg_type": "VIDEO"},
    "msg_type AI_REPLY": {"group_id": "{group}", "content": "I am the AI", "msg_type": "AI_REPLY"},
    "IMAGE not a URL": {"group_id": "{group}", "content": "a picture of my rash", "msg_type": "IMAGE"},
    "IMAGE not http": {"group_id": "{group}", "content": "ftp://example.com/a.jpg", "msg_type": "IMAGE"},
    "IMAGE javascript": {"group_id": "{group}", "content": "javascript:alert(1)", "msg_type": "IMAGE"},
    "client_msg_id 65 chars": {"group_id": "{group}", "content": "hi", "client_msg_id": "k" * 65},
    "client_msg_id empty": {"group_id": "{group}", "content": "hi", "client_msg_id": ""},
    "client_msg_id a number": {"group_id": "{group}", "content": "hi", "client_msg_id": 7},
    "client_msg_id a list": {"group_id": "{group}", "content": "hi", "client_msg_id": ["k"]},
}


def _fill(body, group):
    return {k: (v.replace("{group}", group.group_id) if isinstance(v, str) else
                [x.replace("{group}", group.group_id) for x in v] if k == "group_id" and isinstance(v, list) else v)
            for k, v in body.items()}


def assert_nothing_stored(group, before):
    assert counts() == before
    assert ChatGroup.objects.get(pk=group.pk).last_seq == 0


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_send_is_a_validation_error_and_stores_nothing(care_group, assistant, client_for, body):
    # The group's own AI assistant: even it may not write AI_REPLY through the API.
    before = counts()

    response = client_for(assistant).post("/api/message/send", _fill(body, care_group), format="json")

    assert_error(response, 400, "VALIDATION_ERROR")
    assert_nothing_stored(care_group, before)


def test_a_refused_field_is_named_in_the_details(care_group, patient, client_for):
    response = client_for(patient).post("/api/message/send", {"group_id": care_group.group_id, "content": "hi",
                                                               "client_msg_id": "k" * 65}, format="json")

    assert "client_msg_id" in assert_error(response, 400, "VALIDATION_ERROR")["details"]


def test_content_one_character_over_the_limit_is_too_large(care_group, patient, client_for, settings):
    settings.IM_MAX_MESSAGE_CHARS = 10
    before = counts()

    response = client_for(patient).post("/api/message/send", {"group_id": care_group.group_id, "content": "x" * 11},
                                        format="json")

    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert_nothing_stored(care_group, before)


def test_content_over_the_default_limit_is_too_large(care_group, patient, client_for):
    before = counts()

    response = client_for(patient).post("/api/message/send", {"group_id": care_group.group_id, "content": "x" * 4001},
                                        format="json")

    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert_nothing_stored(care_group, before)


@pytest.mark.parametrize("fmt", ["json", "multipart"])
def test_a_request_body_over_the_server_limit_is_too_large(care_group, patient, client_for, fmt):
    before = counts()

    response = client_for(patient).post("/api/message/send",
                                        {"group_id": care_group.group_id, "content": "x" * 300_000}, format=fmt)

    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert_nothing_stored(care_group, before)


def test_send_to_an_unknown_group_is_not_found(care_group, patient, client_for):
    before = counts()

    response = client_for(patient).post("/api/message/send", {"group_id": "group_doesnotexist", "content": "hi"},
                                        format="json")

    assert_error(response, 404, "NOT_FOUND")
    assert counts() == before


@pytest.mark.parametrize("raw", ['{"group_id": "g", "content": ', "not json at all", '{"content": "hi",}', "[1, 2]",
                                 '"just a string"'])
def test_malformed_json_body_is_a_validation_error(care_group, patient, client_for, raw):
    before = counts()

    response = client_for(patient).post("/api/message/send", data=raw, content_type="application/json")

    assert_error(response, 400, "VALIDATION_ERROR")
    assert counts() == before


def test_a_failed_send_does_not_leave_a_gap_in_seq(care_group, patient, client_for, settings):
    settings.IM_MAX_MESSAGE_CHARS = 10
    client = client_for(patient)

    client.post("/api/message/send", {"group_id": care_group.group_id, "content": "x" * 11}, format="json")
    client.post("/api/message/send", {"group_id": care_group.group_id, "content": " "}, format="json")
    ok = client.post("/api/message/send", {"group_id": care_group.group_id, "content": "fine"}, format="json")

    assert ok.status_code == 201 and ok.json()["seq"] == 1
    assert list(Message.objects.values_list("seq", flat=True)) == [1]
