"""A read compiled once returns what its queryset returns, run after run with other values, in every thread, and
keeps the queryset's locks and checks."""
import threading

import pytest
from django.db import DatabaseError, connection, connections, transaction
from django.db.transaction import TransactionManagementError

from chat.models import Message
from chat.services import message_send
from groups.models import ChatGroup, GroupMember
from imserver.patches import CompiledRead
from users.models import Role

pytestmark = pytest.mark.django_db(transaction=True)

MEMBER = CompiledRead(lambda group_id, role: GroupMember.objects.filter(group_id=group_id, user_role=role)
                      .select_related("user", "group").order_by("id")[:1], group_id=-9_000_001, role="~role~")
AFTER = CompiledRead(lambda group_id, seq: Message.objects.filter(group_id=group_id, seq__gt=seq)
                     .order_by("seq").values_list("seq", "content"), group_id=-9_000_002, seq=-9_000_003)
LOCKED = CompiledRead(lambda pk: ChatGroup.objects.select_for_update(nowait=True).filter(pk=pk)
                      .values_list("group_name", flat=True)[:1], pk=-9_000_004)


def test_each_run_returns_what_the_queryset_returns_for_its_own_values(quiet_group, doctor, patient, assistant):
    other = ChatGroup.objects.create(group_name="Ward 11", created_by=doctor)
    GroupMember.objects.create(group=other, user=patient, user_role=Role.PATIENT)

    first = MEMBER.first(group_id=quiet_group.pk, role=Role.PATIENT)
    assert (first.user.username, first.group.group_name) == (patient.username, "Ward 9")
    assert MEMBER.first(group_id=quiet_group.pk, role=Role.AI_ASSISTANT).user == assistant
    assert MEMBER.first(group_id=other.pk, role=Role.PATIENT).group.group_name == "Ward 11"
    assert MEMBER.first(group_id=other.pk, role=Role.DOCTOR) is None


def test_each_run_reads_the_rows_as_they_are_now(quiet_group, patient, settings):
    settings.IM_SEND_RATE = "1000/min"
    for word in ("one", "two", "three"):
        message_send(sender=patient, group=quiet_group, content=word)
    assert AFTER.all(group_id=quiet_group.pk, seq=1) == [(2, "two"), (3, "three")]
    message_send(sender=patient, group=quiet_group, content="four")
    assert AFTER.all(group_id=quiet_group.pk, seq=2) == [(3, "three"), (4, "four")]
    assert AFTER.all(group_id=quiet_group.pk, seq=4) == []


def test_runs_in_many_threads_at_once_each_get_their_own_answer(quiet_group, patient, settings):
    settings.IM_SEND_RATE = "1000/min"
    for n in range(8):
        message_send(sender=patient, group=quiet_group, content=f"m{n + 1}")
    answers, errors = {}, []

    def run(seq):
        try:
            for _ in range(20):
                answers[seq] = AFTER.all(group_id=quiet_group.pk, seq=seq)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(seq,)) for seq in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert answers == {seq: [(n, f"m{n}") for n in range(seq + 1, 9)] for seq in range(8)}


def test_a_setting_the_statement_depends_on_compiles_it_again(quiet_group, patient, settings):
    settings.IM_SEND_RATE = "1000/min"
    for word in ("one", "two", "three"):
        message_send(sender=patient, group=quiet_group, content=word)
    settings.TEST_LIMIT = 1
    limited = CompiledRead(lambda group_id: Message.objects.filter(group_id=group_id).order_by("seq")
                           .values_list("content", flat=True)[: settings.TEST_LIMIT],
                           shape=lambda: settings.TEST_LIMIT, group_id=-9_000_005)
    assert limited.all(group_id=quiet_group.pk) == ["one"]
    settings.TEST_LIMIT = 2
    assert limited.all(group_id=quiet_group.pk) == ["one", "two"]


def test_a_locking_read_needs_a_transaction_and_holds_the_row_lock(quiet_group):
    with pytest.raises(TransactionManagementError):
        LOCKED.first(pk=quiet_group.pk)
    with transaction.atomic():
        assert LOCKED.first(pk=quiet_group.pk) == "Ward 9"
        if connection.vendor == "postgresql":  # SQLite locks the whole database, not rows
            refused = []

            def other_transaction():
                try:
                    with transaction.atomic():
                        LOCKED.first(pk=quiet_group.pk)
                except DatabaseError as exc:
                    refused.append(exc)
                finally:
                    connections.close_all()

            thread = threading.Thread(target=other_transaction)
            thread.start()
            thread.join()
            assert refused, "another transaction took the row while this one held it"


def test_a_sample_the_statement_does_not_carry_is_refused(quiet_group):
    unused = CompiledRead(lambda pk, name: ChatGroup.objects.filter(pk=pk).values_list("pk")[:1],
                          pk=-9_000_006, name="~unused~")
    with pytest.raises(ValueError, match="name"):
        unused.all(pk=quiet_group.pk, name="x")
    with pytest.raises(ValueError):
        LOCKED.all(pk=None)
