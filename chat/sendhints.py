"""What the direct send path last read of a group and a sender's place in it, kept per process.

A hint saves the group lookup on a sender's next sends (chat.services.message_send_direct). It is never trusted:
the send statement itself checks, as it stores the message, that the sender still is a member with the hinted
in-group role and that the group still holds the values the ORM-path tests read (chat.services.orm_path_for).
When one of them has changed, nothing is stored, the hint is dropped and the send goes to the ORM path, which
reads everything again. So no invalidation has to reach it, and a stale hint costs one statement, never a wrong
message. Bounded by SEND_HINTS_MAX (the oldest go first); 0 turns hints off."""
from django.conf import settings

from groups.models import ChatGroup

_hints: dict[tuple[str, int], tuple[ChatGroup, str]] = {}  # (group_id, sender pk) -> (group, in-group role)


def hint_get(group_id: str, sender_pk: int) -> tuple[ChatGroup, str] | None:
    return _hints.get((group_id, sender_pk))


def hint_keep(group_id: str, sender_pk: int, group: ChatGroup, role: str) -> None:
    limit = settings.SEND_HINTS_MAX
    if limit <= 0:
        return
    while len(_hints) >= limit:
        _hints.pop(next(iter(_hints)), None)
    _hints[(group_id, sender_pk)] = (group, role)


def hint_drop(group_id: str, sender_pk: int) -> None:
    _hints.pop((group_id, sender_pk), None)


def hints_clear() -> None:
    _hints.clear()
