"""Concurrent sends to one group, with real threads and connections against PostgreSQL."""
import threading

import pytest
from django.db import connection, connections

from chat.models import Message
from chat.services import message_send
from groups.models import ChatGroup

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row-lock concurrency is a PostgreSQL fact"),
]


def _run_concurrently(count, work):
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def runner(i):
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results, errors


def test_fifty_concurrent_sends_get_seqs_one_to_fifty(care_group, doctor):
    results, errors = _run_concurrently(
        50, lambda i: message_send(sender=doctor, group=ChatGroup.objects.get(pk=care_group.pk),
                                   content=f"message {i}")[0].seq)
    assert errors == []
    assert sorted(results) == list(range(1, 51))
    stored = list(Message.objects.filter(group=care_group).order_by("seq").values_list("seq", flat=True))
    assert stored == list(range(1, 51))
    care_group.refresh_from_db()
    assert care_group.last_seq == 50


def test_twenty_concurrent_sends_with_one_client_msg_id_store_one_row(care_group, patient):
    results, errors = _run_concurrently(
        20, lambda i: message_send(sender=patient, group=ChatGroup.objects.get(pk=care_group.pk),
                                   content="only once", client_msg_id="retry-123"))
    assert errors == []
    rows = Message.objects.filter(group=care_group, client_msg_id="retry-123")
    assert rows.count() == 1
    only = rows.get()
    assert {message.message_id for message, _ in results} == {only.message_id}
    assert sum(created for _, created in results) == 1
    care_group.refresh_from_db()
    assert care_group.last_seq == 1 and only.seq == 1
