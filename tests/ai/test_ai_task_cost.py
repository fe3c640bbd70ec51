"""What one AI answer costs the worker: a fixed, small number of statements from the patient's record to the
posted reply, streamed, with every check of the clinical-safety path still made."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ai_bridge import tasks
from ai_bridge.models import AIInteractionRecord, Status
from chat.services import message_send
from tests.core.test_message_send_cost import TRANSACTION_CONTROL, store_statements
from tests.support.ai import record_undispatched
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# The record with its group and message; the history; the attempt claimed (a conditional UPDATE); the check before
# the first streamed piece (the group and a doctor's later message in one statement); then, under the locks, the
# record's status, the group's row, a doctor's later message, the assistant, the reply's store, and the record.
# The reply's store needs no savepoint of its own: the record's lock rules out a twin of the reply.
STEP_STATEMENTS = 9
SAVEPOINTS = ("SAVEPOINT", "RELEASE SAVEPOINT")


def test_a_streamed_answer_costs_a_fixed_number_of_statements(ai_service, care_group, patient, settings):
    settings.AI_SERVICE_STREAM = True
    message_send(sender=patient, group=care_group, content="warm-up")  # answered in-process: the assistant joins
    wait_for(lambda: AIInteractionRecord.objects.filter(status=Status.SUCCESS).exists())
    record = record_undispatched(group=care_group, sender=patient, content="how often?")

    with CaptureQueriesContext(connection) as queries:
        assert tasks.step(record.record_id) is None

    record.refresh_from_db()
    assert record.status == Status.SUCCESS and record.ai_message.content.startswith("Reference AI reply to: how often?")
    sent = [q["sql"] for q in queries if not q["sql"].startswith(TRANSACTION_CONTROL)]
    assert len(sent) == STEP_STATEMENTS + store_statements(), "\n".join(sent)
    assert not [q["sql"] for q in queries if q["sql"].startswith(SAVEPOINTS)]
