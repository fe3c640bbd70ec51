"""Who may do what inside a group: every decision uses the in-group role."""
from groups.models import ChatGroup, GroupMember
from imserver.errors import NotFound, NotGroupMember, PermissionDeniedError
from users.models import Role


def member_role(user, group: ChatGroup) -> str | None:
    """The user's in-group role, None for a non-member."""
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


def group_by_public_id(group_id: str) -> ChatGroup:
    """The group, or NOT_FOUND."""
    group = ChatGroup.objects.filter(group_id=group_id).first()
    if group is None:
        raise NotFound(f"No group {group_id!r}.", details={"group_id": group_id})
    return group


def group_with_role(group_id: str, user) -> tuple[ChatGroup, str | None]:
    """The group (or NOT_FOUND) and the user's in-group role (None for a non-member), in one query."""
    return _found(*ChatGroup.objects.with_role_of(group_id, user), group_id)


async def agroup_with_role(group_id: str, user, conn=None) -> tuple[ChatGroup, str | None]:
    """group_with_role from the server's event loop (imserver.asyncdb), on `conn` if given."""
    return _found(*await ChatGroup.objects.awith_role_of(group_id, user, conn), group_id)


def _found(group: ChatGroup | None, role: str | None, group_id: str) -> tuple[ChatGroup, str | None]:
    if group is None:
        raise NotFound(f"No group {group_id!r}.", details={"group_id": group_id})
    return group, role
