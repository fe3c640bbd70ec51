"""The only write paths for groups and their members."""
from django.db import IntegrityError, transaction

from chat import realtime
from groups.models import AIMode, ChatGroup, GroupMember
from imserver.errors import AlreadyMember, NotFound, ValidationFailed
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


def group_update(*, group: ChatGroup, **changes) -> ChatGroup:
    """Rename, describe, or set the group's AI mode (`ai_mode`, or the `ai_enabled` switch)."""
    allowed = {"group_name", "description", "ai_enabled", "ai_mode"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValidationFailed(f"Cannot change {', '.join(sorted(unknown))}.")
    mode = _mode(changes.pop("ai_mode", None), changes.pop("ai_enabled", None))
    if mode is not None:
        changes["ai_mode"] = mode
    for field, value in changes.items():
        setattr(group, field, value)
    group.save(update_fields=[*changes, "updated_at"])
    return group


def member_add(*, group: ChatGroup, user: User, user_role: str) -> GroupMember:
    """Add a user to a group; their open connections join it at once."""
    check_role(user_role)
    try:
        with transaction.atomic():
            member = GroupMember.objects.create(group=group, user=user, user_role=user_role)
    except IntegrityError as exc:
        raise AlreadyMember(details={"user_id": user.user_id, "group_id": group.group_id}) from exc
    _roles_changed(group)
    transaction.on_commit(lambda: realtime.member_joined(member=member))
    return member


def member_role_change(*, member: GroupMember, user_role: str) -> GroupMember:
    """Change a member's in-group role."""
    check_role(user_role)
    member.user_role = user_role
    member.save(update_fields=["user_role"])
    if GroupMember.group.is_cached(member):
        _roles_changed(member.group)
    return member


def member_remove(*, group: ChatGroup, user: User) -> None:
    """Remove a user from a group; their open connections leave it at once (chat.receivers, which also sees
    memberships deleted by a cascade or the admin)."""
    member = GroupMember.objects.filter(group=group, user=user).select_related("group", "user").first()
    if member is None:
        raise NotFound("The user is not a member of this group.", details={"user_id": user.user_id})
    member.delete()
    _roles_changed(group)


def _roles_changed(group: ChatGroup) -> None:
    """Forget the in-group roles read with this group object (groups.permissions.group_by_public_id)."""
    vars(group).pop("known_roles", None)
