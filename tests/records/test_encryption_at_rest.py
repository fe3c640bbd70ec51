"""Message content encrypted at rest under IM_ENCRYPTION_KEYS: the database holds no plain text, every reader (API,
admin, exports, AI bridge) sees plain text, keys rotate, and wrong keys stop the start instead of serving garbage."""
import json

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection

from ai_bridge.services import ai_history
from chat.models import Message
from chat.services import message_send
from groups.services import group_create
from imserver import crypto
from tests.support.api import assert_error
from users.models import Role

KEY_A, KEY_B, KEY_C = (Fernet.generate_key().decode() for _ in range(3))


@pytest.fixture
def care_group(doctor, patient):
    """A group of the doctor and a patient with the AI off: no AI traffic joins the rows under test."""
    return group_create(creator=doctor, group_name="Ward 5", ai_enabled=False, members=[(patient, Role.PATIENT)])


@pytest.fixture
def keys(settings):
    """Set IM_ENCRYPTION_KEYS (first encrypts) for the rest of the test."""
    def use(*keys):
        settings.IM_ENCRYPTION_KEYS = list(keys)
    use(KEY_A)
    return use


def stored(message) -> str:
    """The content column as the database holds it (what a dump or a backup shows)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT content FROM messages WHERE id = %s", [message.pk])
        return cursor.fetchone()[0]


def store_raw(message, value: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE messages SET content = %s WHERE id = %s", [value, message.pk])


def test_the_database_holds_no_plain_text(keys, care_group, patient, client_for):
    response = client_for(patient).post("/api/message/send", {"group_id": care_group.group_id,
                                                              "content": "My INR was 4.2 today"}, format="json")

    message = Message.objects.get(message_id=response.json()["message_id"])
    raw = stored(message)
    assert raw.startswith("enc$f$") and "INR" not in raw and "4.2" not in raw
    assert Fernet(KEY_A).decrypt(raw.removeprefix("enc$f$").encode()) == b"My INR was 4.2 today"


def test_the_api_returns_plain_text(keys, care_group, patient, doctor, client_for):
    sent = client_for(patient).post("/api/message/send", {"group_id": care_group.group_id,
                                                          "content": "swollen ankles since noon"}, format="json").json()
    client = client_for(doctor)

    assert sent["content"] == "swollen ankles since noon"
    assert client.get(f"/api/message/{sent['message_id']}").json()["content"] == "swollen ankles since noon"
    history = client.get(f"/api/message/list?group_id={care_group.group_id}").json()["messages"]
    catch_up = client.get(f"/api/message/list?group_id={care_group.group_id}&after_seq=0").json()["messages"]
    assert [m["content"] for m in history] == [m["content"] for m in catch_up] == ["swollen ankles since noon"]


def test_admin_exports_and_the_ai_bridge_see_plain_text(keys, care_group, patient, doctor, admin_browser,
                                                        client_for):
    first = message_send(sender=doctor, group=care_group, content="How is the swelling?")[0]
    second = message_send(sender=patient, group=care_group, content="Less than yesterday")[0]

    assert "How is the swelling?" in admin_browser.get("/admin/chat/message/").content.decode()
    assert "Less than yesterday" in admin_browser.get(f"/admin/chat/message/{second.pk}/change/").content.decode()
    exported = client_for(doctor).get(f"/api/group/{care_group.group_id}/export?format=json")
    body = json.loads(b"".join(exported.streaming_content))
    assert [m["content"] for m in body["messages"]] == ["How is the swelling?", "Less than yesterday"]
    fhir = b"".join(client_for(doctor).get(f"/api/group/{care_group.group_id}/export?format=fhir")
                    .streaming_content).decode()
    assert "Less than yesterday" in fhir and "enc$" not in fhir
    assert ai_history(message=second) == [{"role": "user", "content": "How is the swelling?"}]
    assert Message.objects.get(pk=first.pk).content == "How is the swelling?"


def test_idempotent_sends_still_return_the_first_message(keys, care_group, patient, client_for):
    client = client_for(patient)
    body = {"group_id": care_group.group_id, "content": "once", "client_msg_id": "enc-1"}

    first = client.post("/api/message/send", body, format="json")
    again = client.post("/api/message/send", {**body, "content": "twice?"}, format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["message_id"] == first.json()["message_id"] and again.json()["content"] == "once"
    assert Message.objects.count() == 1


def test_plain_text_rows_written_before_the_keys_still_read(keys, settings, care_group, doctor):
    settings.IM_ENCRYPTION_KEYS = []
    legacy = message_send(sender=doctor, group=care_group, content="written before encryption")[0]
    lookalike = message_send(sender=doctor, group=care_group, content="enc$f$not-a-token")[0]
    assert stored(legacy) == "written before encryption"  # no keys: stored as it is
    keys(KEY_A)

    assert Message.objects.get(pk=legacy.pk).content == "written before encryption"
    assert Message.objects.get(pk=lookalike.pk).content == "enc$f$not-a-token"  # escaped, so never taken for one


def test_rotation_re_encrypts_under_the_first_key_and_is_resumable(keys, care_group, doctor, settings, capsys):
    settings.IM_ENCRYPTION_KEYS = []
    legacy = message_send(sender=doctor, group=care_group, content="plain legacy")[0]
    keys(KEY_A)
    old = [message_send(sender=doctor, group=care_group, content=f"under A {i}")[0] for i in range(5)]
    keys(KEY_B, KEY_A)  # the new key first; the old one still decrypts
    new = message_send(sender=doctor, group=care_group, content="under B")[0]

    call_command("encryption_rotate", "--batch", "2")
    assert "chat.Message.content: 6 rows rewritten" in capsys.readouterr().out  # the 5 under A, the plain one

    keys(KEY_B)  # the old key can go now
    for message in [legacy, *old, new]:
        raw = stored(message)
        assert Fernet(KEY_B).decrypt(raw.removeprefix("enc$f$").encode()).decode() == message.content
        assert Message.objects.get(pk=message.pk).content == message.content
    call_command("encryption_rotate")
    assert "chat.Message.content: 0 rows rewritten" in capsys.readouterr().out  # a second run has nothing to do


def test_wrong_keys_fail_the_start_up_check_and_never_serve_ciphertext(keys, care_group, doctor, client_for):
    message_send(sender=doctor, group=care_group, content="confidential")
    keys(KEY_C)  # a key that never encrypted anything here

    errors = crypto.check_encryption_keys(databases=["default"])
    with pytest.raises(SystemCheckError, match="imserver.E102"):
        call_command("check", "--database", "default")
    with pytest.raises(SystemCheckError, match="imserver.E102"):
        call_command("migrate", verbosity=0, skip_checks=False)  # as make run and deploy/run do before the servers
    response = client_for(doctor).get(f"/api/message/list?group_id={care_group.group_id}")

    assert [e.id for e in errors] == ["imserver.E102"] and "chat.Message.content" in errors[0].msg
    assert_error(response, 500, "INTERNAL_ERROR")
    assert b"enc$" not in response.content and b"confidential" not in response.content
    with pytest.raises(crypto.DecryptionError):
        Message.objects.get()


def test_dropping_the_keys_while_rows_are_encrypted_fails_the_check(keys, settings, care_group, doctor):
    message_send(sender=doctor, group=care_group, content="confidential")
    settings.IM_ENCRYPTION_KEYS = []

    assert [e.id for e in crypto.check_encryption_keys(databases=["default"])] == ["imserver.E102"]


def test_a_dropped_old_key_is_found_among_the_oldest_rows(keys, care_group, doctor):
    message_send(sender=doctor, group=care_group, content="under A")
    keys(KEY_B)
    message_send(sender=doctor, group=care_group, content="under B")  # the newest row reads fine

    assert [e.id for e in crypto.check_encryption_keys(databases=["default"])] == ["imserver.E102"]


def test_malformed_keys_fail_the_check_without_a_database(settings):
    settings.IM_ENCRYPTION_KEYS = ["not-a-fernet-key"]

    assert [e.id for e in crypto.check_encryption_keys()] == ["imserver.E101"]


def test_right_keys_pass_the_check(keys, care_group, doctor):
    message_send(sender=doctor, group=care_group, content="fine")
    keys(KEY_B, KEY_A)

    assert crypto.check_encryption_keys(databases=["default"]) == []


def test_the_json_field_round_trips_and_is_encrypted(keys):
    field = crypto.EncryptedJSONField()
    value = {"message": "胸痛", "history": [{"role": "user", "content": "since noon"}]}

    prepared = field.get_prep_value(value)

    assert prepared.startswith("enc$f$") and "since noon" not in prepared
    assert field.from_db_value(prepared, None, connection) == value
