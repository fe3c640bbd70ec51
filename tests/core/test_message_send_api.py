"""POST /api/message/send: 201 with the stored message, 200 with the same message on an idempotent repeat."""
import pytest

from chat.models import Message
from groups.models import ChatGroup

MESSAGE_FIELDS = {"message_id", "group_id", "seq", "from_user_id", "from_role", "msg_type", "content",
                  "client_msg_id", "reply_to", "created_at"}


def send(client, group, content="Hello", **extra):
    return client.post("/api/message/send", {"group_id": group.group_id, "content": content, **extra},
                       format="json")


@pytest.mark.parametrize("path", ["/api/message/send", "/api/message/send/"])
def test_member_sends_a_message(care_group, patient, client_for, path):
    response = client_for(patient).post(path, {"group_id": care_group.group_id, "content": "  I feel dizzy \n"},
                                        format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == MESSAGE_FIELDS
    assert body["message_id"].startswith("msg_") and body["group_id"] == care_group.group_id
    assert body["seq"] == 1 and body["content"] == "I feel dizzy"
    assert body["from_user_id"] == patient.user_id and body["from_role"] == "PATIENT"
    assert body["msg_type"] == "TEXT" and body["client_msg_id"] is None and body["reply_to"] is None
    assert body["created_at"].endswith("Z")
    stored = Message.objects.get(message_id=body["message_id"])
    assert stored.content == "I feel dizzy" and stored.seq == 1
    assert ChatGroup.objects.get(pk=care_group.pk).last_seq == 1


def test_seq_counts_up_without_gaps_across_senders(care_group, doctor, patient, client_for):
    seqs = [send(client_for(sender), care_group, f"m{i}").json()["seq"]
            for i, sender in enumerate([doctor, patient, doctor, patient])]

    assert seqs == [1, 2, 3, 4]
    assert ChatGroup.objects.get(pk=care_group.pk).last_seq == 4


def test_from_role_is_the_in_group_role(care_group, doctor, patient, client_for):
    assert send(client_for(doctor), care_group).json()["from_role"] == "DOCTOR"
    assert send(client_for(patient), care_group).json()["from_role"] == "PATIENT"


def test_repeat_with_same_client_msg_id_returns_the_first_message(care_group, patient, client_for):
    client = client_for(patient)

    first = send(client, care_group, "Take my pulse?", client_msg_id="c-42")
    again = send(client, care_group, "Take my pulse?", client_msg_id="c-42")

    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["message_id"] == first.json()["message_id"]
    assert again.json()["seq"] == first.json()["seq"] == 1
    assert again.json()["client_msg_id"] == "c-42"
    assert Message.objects.filter(group=care_group).count() == 1
    assert ChatGroup.objects.get(pk=care_group.pk).last_seq == 1  # the repeat used up no seq
    assert send(client, care_group, "next").json()["seq"] == 2


def test_a_repeat_with_other_content_still_returns_the_first_message(care_group, patient, client_for):
    client = client_for(patient)
    first = send(client, care_group, "original", client_msg_id="c-1")

    again = send(client, care_group, "edited", client_msg_id="c-1")

    assert again.status_code == 200 and again.json()["content"] == "original"
    assert again.json()["message_id"] == first.json()["message_id"]
    assert Message.objects.count() == 1


def test_same_client_msg_id_from_another_sender_is_a_new_message(care_group, doctor, patient, client_for):
    mine = send(client_for(patient), care_group, client_msg_id="c-1")
    theirs = send(client_for(doctor), care_group, client_msg_id="c-1")

    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["message_id"] != theirs.json()["message_id"]
    assert Message.objects.count() == 2


def test_client_msg_id_of_64_characters_passes(care_group, patient, client_for):
    response = send(client_for(patient), care_group, client_msg_id="k" * 64)

    assert response.status_code == 201 and response.json()["client_msg_id"] == "k" * 64


def test_content_of_exactly_the_limit_passes(care_group, patient, client_for, settings):
    settings.IM_MAX_MESSAGE_CHARS = 10

    response = send(client_for(patient), care_group, "  " + "x" * 10 + "  ")  # trimmed before counting

    assert response.status_code == 201 and response.json()["content"] == "x" * 10


def test_content_of_the_default_limit_passes(care_group, patient, client_for):
    assert send(client_for(patient), care_group, "y" * 4000).status_code == 201


def test_image_message_with_a_url(care_group, patient, client_for):
    response = send(client_for(patient), care_group, "https://cdn.example.com/rash.jpg", msg_type="IMAGE")

    assert response.status_code == 201, response.content
    assert response.json()["msg_type"] == "IMAGE" and response.json()["content"] == "https://cdn.example.com/rash.jpg"


def test_assistant_member_sends_text(care_group, assistant, client_for):
    response = send(client_for(assistant), care_group, "Noted.")

    assert response.status_code == 201 and response.json()["from_role"] == "AI_ASSISTANT"
