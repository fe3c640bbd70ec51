"""With IM_ENCRYPTION_KEYS set, what the AI was sent and answered, and a draft, are encrypted at rest too."""
import pytest
from cryptography.fernet import Fernet
from django.db import connection

from ai_bridge.models import AIInteractionRecord, Status
from chat.services import message_send
from groups.services import group_update
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
KEY = Fernet.generate_key().decode()


def _raw(record, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM ai_interaction_records WHERE id = %s", [record.pk])
        return cursor.fetchone()[0]


def test_ai_bodies_and_drafts_are_not_plain_text_in_the_database(ai_service, care_group, patient, doctor, staff,
                                                                 client_for, settings):
    settings.IM_ENCRYPTION_KEYS = [KEY]
    group_update(group=care_group, ai_mode="review")
    message_send(sender=patient, group=care_group, content="My warfarin dose is 5 mg")
    record = wait_for(lambda: AIInteractionRecord.objects.filter(status=Status.AWAITING_REVIEW).first())
    for column in ("request_body", "response_body", "draft"):
        raw = _raw(record, column)
        assert raw.startswith("enc$f$") and "warfarin" not in raw, column
    # Staff and the doctor read plain text through the API.
    detail = client_for(staff).get(f"/api/ai/interactions/{record.record_id}").json()
    assert detail["request_body"]["message"] == "My warfarin dose is 5 mg"
    assert "warfarin" in client_for(doctor).get(f"/api/ai/interactions/{record.record_id}").json()["draft"]
