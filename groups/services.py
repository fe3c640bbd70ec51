"""The only write paths for groups and their members."""
from django.db import IntegrityError, transaction
from django.db.models import BigIntegerField, Subquery, Value
from django.db.models.functions import Least

from groups.models import AIMode, ChatGroup, GroupMember
from imserver import publish
from imserver.audit import audit
from imserver.errors import AlreadyMember, NotFound, NotGroupMember, ValidationFailed
from users.models import Role, User
from users.services import check_role


def _mode(ai_mode: str | None, ai_enabled: bool | None) -> str | None:
    """The AI mode asked for: `ai_mode` itself, or the contract's mapping of the `ai_enabled` switch."""
    if ai_mode is not None:
        if ai_mode not in AIMode.values:
            raise ValidationFailed(f"ai_mode must be one of {', '.join(AIMode.values)}.",
                                   details={"ai_mode": [f"Unknown mode {ai_mode!r}."]})
        return ai_mode
    if ai_enabled is not None:
        return AIMode.AUTO if ai_enabled else AIMode.OFF
    return None


@transaction.atomic
def group_create(*, creator: User, group_name: str, description: str = "",
                 members: list[tuple[User, str]] = (), ai_enabled: bool | None = None,
                 ai_mode: str | None = None) -> ChatGroup:
    """Create a group; the creator joins as an in-group DOCTOR, then the listed members join."""
    group = ChatGroup.objects.create(group_name=group_name, description=description, created_by=creator,
                                     ai_mode=_mode(ai_mode, ai_enabled) or AIMode.AUTO)
    member_add(group=group, user=creator, user_role=Role.DOCTOR)
    for user, user_role in members:
        if user.pk != creator.pk:
            member_add(group=group, user=user, user_role=user_role)
    return group


@transaction.atomic
def group_update(*, group: ChatGroup, **changes) -> ChatGroup:
    """Rename, describe, or set the group's AI mode (`ai_mode`, or the `ai_enabled` switch)."""
    allowed = {"group_name", "description", "ai_enabled", "ai_mode"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValidationFailed(f"Cannot change {', '.join(sorted(unknown))}.")
    mode = _mode(changes.pop("ai_mode", None), changes.pop("ai_enabled", None))
    before = group.ai_mode
    if mode is not None:
        changes["ai_mode"] = mode
    for field, value in changes.items():
        setattr(group, field, value)
    group.save(update_fields=[*changes, "updated_at"])
    if mode is not None and mode != before:
        audit(action="group.ai_mode_change", target=group.group_id, details={"from": before, "to": mode})
    return group


@transaction.atomic
def member_add(*, group: ChatGroup, user: User, user_role: str) -> GroupMember:
    """Add a user to a group; their open connections join it at once."""
    check_role(user_role)
    try:
        with transaction.atomic():
            member = GroupMember.objects.create(group=group, user=user, user_role=user_role)
    except IntegrityError as exc:
        raise AlreadyMember(details={"user_id": user.user_id, "group_id": group.group_id}) from exc
    audit(action="member.add", target=group.group_id, details={"user_id": user.user_id, "user_role": user_role})
    transaction.on_commit(lambda: publish.member_joined(member=member))
    return member


@transaction.atomic
def member_role_change(*, member: GroupMember, user_role: str) -> GroupMember:
    """Change a member's in-group role."""
    check_role(user_role)
    before = member.user_role
    member.user_role = user_role
    member.save(update_fields=["user_role"])
    if before != user_role:
        audit(action="member.role_change", target=member.group.group_id,
              details={"user_id": member.user.user_id, "from": before, "to": user_role})
    return member


@transaction.atomic
def member_remove(*, group: ChatGroup, user: User) -> None:
    """Remove a user from a group; their open connections leave it at once (chat.receivers, which also sees
    memberships deleted by a cascade or the admin)."""
    member = GroupMember.objects.filter(group=group, user=user).select_related("group", "user").first()
    if member is None:
        raise NotFound("The user is not a member of this group.", details={"user_id": user.user_id})
    member.delete()
    audit(action="member.remove", target=group.group_id, details={"user_id": user.user_id,
                                                                  "user_role": member.user_role})


def read_mark(*, group: ChatGroup, user: User, seq: int) -> int:
    """Move the member's read watermark forward to `seq`, never past the group's last_seq; returns the watermark.

    One conditional UPDATE, clamped in SQL to the committed last_seq, and a `read_receipt` to the group only when
    the watermark moved: repeating or lowering a read writes nothing."""
    last_seq = Subquery(ChatGroup.objects.filter(pk=group.pk).values("last_seq")[:1])
    target = Least(Value(seq, output_field=BigIntegerField()), last_seq)
    mine = GroupMember.objects.filter(group=group, user=user)
    with transaction.atomic():
        moved = mine.filter(last_read_seq__lt=target).update(last_read_seq=target)
        last_read_seq = mine.values_list("last_read_seq", flat=True).first()
        if last_read_seq is None:
            raise NotGroupMember(details={"group_id": group.group_id})
        if moved:
            transaction.on_commit(lambda: publish.read_receipt(group_id=group.group_id, user_id=user.user_id,
                                                                last_read_seq=last_read_seq))
    return last_read_seq
