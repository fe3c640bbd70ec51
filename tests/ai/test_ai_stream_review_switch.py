"""A group switched to review mode while an answer streams: the rest of the stream is for its doctors only."""
import pytest

from ai_bridge.models import AIInteractionRecord
from ai_bridge.posting import DeltaRelay
from chat.services import message_send
from groups.models import ChatGroup
from groups.services import group_update
from tests.support.ws import connected, db, nothing, receive, run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_channel_layer")]


def test_a_switch_to_review_mid_stream_hides_the_rest_from_the_patient(doctor, patient, care_group, settings):
    settings.AI_TASKS_IN_PROCESS = False  # the record is streamed by hand below, not by a task
    settings.CELERY_BROKER_URL = "memory://"
    settings.AI_STREAM_FRAME_MS = 0
    question, _ = message_send(sender=patient, group=care_group, content="how long should I rest?")
    record = AIInteractionRecord.objects.select_related("group", "user_message").get(user_message=question)
    relay = DeltaRelay(record)

    def to_review():
        group_update(group=ChatGroup.objects.get(pk=care_group.pk), ai_mode="review")

    async def scenario():
        async with connected(doctor) as dr, connected(patient) as pt:
            await db(relay)("Rest for ")
            seen = [await receive(dr), await receive(pt)]
            await db(to_review)()
            await db(relay)("two weeks.")
            doctor_later = await receive(dr)
            await nothing(pt)
            return seen, doctor_later

    seen, doctor_later = run(scenario)
    assert [f["text"] for f in seen] == ["Rest for ", "Rest for "]
    assert doctor_later["type"] == "ai_delta" and doctor_later["text"] == "two weeks."
