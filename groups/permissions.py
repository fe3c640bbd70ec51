"""Who may do what inside a group: every decision uses the in-group role."""
from groups.models import ChatGroup, GroupMember
from imserver.errors import NotFound, NotGroupMember, PermissionDeniedError
from users.models import Role


def member_role(user, group: ChatGroup) -> str | None:
    """The user's in-group role, None for a non-member; no query when it was read with the group."""
    known = getattr(group, "known_roles", None)
    if known is not None and user.pk in known:
        return known[user.pk]
    return GroupMember.objects.filter(group=group, user=user).values_list("user_role", flat=True).first()


def require_member(user, group: ChatGroup) -> str | None:
    """The caller's in-group role; staff pass with None; anyone else is refused."""
    role = member_role(user, group)
    if role is None and not user.is_staff:
        raise NotGroupMember(details={"group_id": group.group_id})
    return role


def require_doctor(user, group: ChatGroup) -> None:
    """In-group DOCTORs and staff pass."""
    role = require_member(user, group)
    if not user.is_staff and role != Role.DOCTOR:
        raise PermissionDeniedError("Only the group's doctors may do this.")


def group_by_public_id(group_id: str, *, for_user=None) -> ChatGroup:
    """The group; with `for_user`, that user's in-group role is read in the same query (see member_role)."""
    if for_user is not None:
        group = ChatGroup.objects.by_public_id_with_role(group_id, for_user)
    else:
        group = ChatGroup.objects.filter(group_id=group_id).first()
    if group is None:
        raise NotFound(f"No group {group_id!r}.", details={"group_id": group_id})
    if for_user is not None:
        group.known_roles = {for_user.pk: group.role_of_user}
    return group
