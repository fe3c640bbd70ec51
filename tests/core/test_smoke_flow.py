"""The design documents' flow over REST: create user, create group, add member, send, list."""
from chat.models import Message


def test_flow(staff, doctor, client_for):
    admin = client_for(staff)
    patient = admin.post("/api/user/create", {"username": "zhang", "user_role": "PATIENT"}, format="json")
    assert patient.status_code == 201, patient.content
    patient_id = patient.json()["user_id"]
    assert patient_id.startswith("user_")

    dr = client_for(doctor)
    group = dr.post("/api/group/create", {"group_name": "Cardio"}, format="json")
    assert group.status_code == 201, group.content
    group_id = group.json()["group_id"]
    assert group.json()["member_count"] == 1

    added = dr.post(f"/api/group/{group_id}/members", {"user_id": patient_id, "user_role": "PATIENT"},
                    format="json")
    assert added.status_code == 201, added.content

    sent = dr.post("/api/message/send", {"group_id": group_id, "content": "  Hello  "}, format="json")
    assert sent.status_code == 201, sent.content
    assert sent.json()["seq"] == 1 and sent.json()["content"] == "Hello"
    assert sent.json()["from_role"] == "DOCTOR"

    listed = dr.get(f"/api/message/list?group_id={group_id}")
    assert listed.status_code == 200
    body = listed.json()
    assert body["total"] == 1 and body["page"] == 1 and body["page_size"] == 20
    assert body["messages"][0]["message_id"] == sent.json()["message_id"]
    assert Message.objects.count() == 1
