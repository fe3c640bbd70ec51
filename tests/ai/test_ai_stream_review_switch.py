"""A stream's pieces and what the group may see of them: after a switch to review mode, the rest is for its doctors
only; after a doctor wrote, the rest never leaves."""
import pytest

from ai_bridge.client import AIAnswer
from ai_bridge.models import AIInteractionRecord, Status
from ai_bridge.posting import DeltaRelay
from ai_bridge.services import ai_answer_handle
from chat.services import message_send
from groups.models import ChatGroup
from groups.services import group_update
from tests.support.ai import record_undispatched
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


def test_the_last_piece_of_a_stream_a_doctor_overtook_never_leaves(doctor, patient, care_group, settings):
    settings.AI_STREAM_FRAME_MS = 60_000  # the first piece leaves at once, the rest waits for the answer
    record = record_undispatched(group=care_group, sender=patient, content="may I run?")
    relay = DeltaRelay(record)
    answer = AIAnswer(reply="Yes, run daily.", status_code=200, duration_ms=5)

    def doctor_writes():
        message_send(sender=doctor, group=ChatGroup.objects.get(pk=care_group.pk), content="Please wait for me.")

    def answered():
        return ai_answer_handle(record=record, answer=answer, relay=relay)

    async def scenario():
        async with connected(patient) as pt:
            await db(relay)("Yes, ")
            first = await receive(pt)
            await db(relay)("run daily.")  # the stream's end: held for the answer's checks
            await db(doctor_writes)()
            doctors_message = await receive(pt)
            posted = await db(answered)()
            status = await receive(pt)
            await nothing(pt)
            return first, doctors_message, posted, status

    first, doctors_message, posted, status = run(scenario)
    assert (first["type"], first["text"]) == ("ai_delta", "Yes, ")
    assert doctors_message["type"] == "message" and doctors_message["content"] == "Please wait for me."
    assert posted is None and (status["type"], status["status"]) == ("ai_status", "suppressed")
    assert AIInteractionRecord.objects.get(pk=record.pk).status == Status.SUPPRESSED
