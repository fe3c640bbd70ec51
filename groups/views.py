from django.db.models import Count
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from groups import services
from groups.models import ChatGroup, GroupMember
from groups.permissions import group_by_public_id, group_with_role, require_doctor, require_member
from groups.serializers import (
    GroupCreateSerializer,
    GroupSerializer,
    GroupUpdateSerializer,
    MemberInSerializer,
    MemberListSerializer,
    MemberSerializer,
    ReadSerializer,
    ReadStateSerializer,
)
from imserver import ids
from imserver.dbrouter import replica_read
from imserver.errors import NotFound, NotGroupMember, PermissionDeniedError
from imserver.pagination import paginator_for
from imserver.schema import EXAMPLE_USER_ID, errors, example
from users.models import Role, User


def user_by_public_id(user_id: str) -> User:
    user = User.objects.filter(user_id=user_id).first()
    if user is None:
        raise NotFound(f"No user {user_id!r}.", details={"user_id": user_id})
    return user


@extend_schema(tags=["groups"])
class GroupViewSet(viewsets.GenericViewSet):
    queryset = ChatGroup.objects.all()
    serializer_class = GroupSerializer
    lookup_field = "group_id"
    lookup_value_regex = ids.URL_PATTERN
    pagination_class = paginator_for("groups")

    def get_queryset(self):
        return (ChatGroup.objects.visible_to(self.request.user).select_related("created_by")
                .annotate(member_count=Count("memberships", distinct=True))
                .with_read_state(self.request.user).order_by("-id"))

    def _group(self) -> ChatGroup:
        return group_by_public_id(self.kwargs["group_id"])

    def _answer(self, group: ChatGroup, code=status.HTTP_200_OK) -> Response:
        group = ChatGroup.objects.select_related("created_by").annotate(
            member_count=Count("memberships")).with_read_state(self.request.user).get(pk=group.pk)
        return Response(GroupSerializer(group).data, status=code)

    @extend_schema(operation_id="group_list", responses={200: GroupSerializer(many=True), **errors(400)})
    def list(self, request):
        """The caller's groups (staff: all), newest first."""
        # On a replica only once it has replayed everything committed so far (this caller's writes included).
        page = replica_read(lambda: GroupSerializer(self.paginate_queryset(self.get_queryset()), many=True).data)
        return self.get_paginated_response(page)

    @extend_schema(operation_id="group_create", request=GroupCreateSerializer,
                   responses={201: GroupSerializer, **errors(403, 404, body=True)},
                   examples=[example("group", {"group_name": "Cardiology follow-up",
                                               "description": "Zhang San, after discharge"}, "A group of one doctor"),
                             example("with members", {"group_name": "Cardiology follow-up", "members": [
                                 {"user_id": EXAMPLE_USER_ID, "user_role": "PATIENT"}]}, "With its first members")])
    @action(detail=False, methods=["post"], url_path="create")
    def create_group(self, request):
        """Create a group (DOCTOR users and staff); the creator joins as an in-group DOCTOR."""
        if not (request.user.is_staff or request.user.user_role == Role.DOCTOR):
            raise PermissionDeniedError("Only doctors and staff may create groups.")
        body = GroupCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        members = [(user_by_public_id(m["user_id"]), m["user_role"]) for m in data["members"]]
        group = services.group_create(creator=request.user, group_name=data["group_name"],
                                      description=data["description"], members=members)
        return self._answer(group, status.HTTP_201_CREATED)

    @extend_schema(operation_id="group_get", responses={200: GroupSerializer, **errors(403, 404)})
    def retrieve(self, request, group_id=None):
        """One group, for its members and staff."""
        group = self._group()
        require_member(request.user, group)
        return self._answer(group)

    @extend_schema(operation_id="group_update", request=GroupUpdateSerializer,
                   responses={200: GroupSerializer, **errors(403, 404, body=True)},
                   examples=[example("AI off", {"ai_enabled": False}, "A doctor takes the conversation over"),
                             example("review", {"ai_mode": "review"}, "AI answers become drafts for the doctors"),
                             example("rename", {"group_name": "Cardiology, week 2"}, "Rename the group")])
    def partial_update(self, request, group_id=None):
        """Rename the group or switch its AI (in-group DOCTORs and staff)."""
        group = self._group()
        require_doctor(request.user, group)
        body = GroupUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.group_update(group=group, **body.validated_data)
        return self._answer(group)

    @extend_schema(methods=["get"], operation_id="member_list", request=None,
                   description="The group's members with their in-group roles (members, staff).",
                   responses={200: MemberListSerializer, **errors(403, 404)})
    @extend_schema(methods=["post"], operation_id="member_add", request=MemberInSerializer,
                   description="Add a member with an in-group role (in-group DOCTORs, staff); 409 ALREADY_MEMBER.",
                   responses={201: MemberSerializer, **errors(403, 404, 409, body=True)},
                   examples=[example("patient", {"user_id": EXAMPLE_USER_ID, "user_role": "PATIENT"},
                                     "Add a patient")])
    @action(detail=True, methods=["get", "post"])
    def members(self, request, group_id=None):
        """List the members (members, staff) or add one (in-group DOCTORs, staff)."""
        group = self._group()
        if request.method == "GET":
            require_member(request.user, group)
            members = replica_read(lambda: MemberSerializer(
                GroupMember.objects.filter(group=group).select_related("user").order_by("id"), many=True).data)
            return Response({"members": members})
        require_doctor(request.user, group)
        body = MemberInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        user = user_by_public_id(body.validated_data["user_id"])
        member = services.member_add(group=group, user=user, user_role=body.validated_data["user_role"])
        return Response(MemberSerializer(member).data, status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="group_read", request=ReadSerializer,
                   responses={200: ReadStateSerializer, **errors(403, 404, body=True)},
                   examples=[example("read", {"seq": 42}, "Seen up to seq 42")])
    @action(detail=True, methods=["post"])
    def read(self, request, group_id=None):
        """Mark the group read up to `seq` (members): the watermark only moves forward, never past last_seq."""
        group, role = group_with_role(group_id, request.user)
        if role is None:  # staff too: read state is a member's own
            raise NotGroupMember(details={"group_id": group.group_id})
        body = ReadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.read_mark(group=group, user=request.user, seq=body.validated_data["seq"])
        state = ChatGroup.objects.with_read_state(request.user).values("read_seq", "unread").get(pk=group.pk)
        return Response({"group_id": group.group_id, "last_read_seq": state["read_seq"],
                         "unread_count": state["unread"]})

    @extend_schema(operation_id="member_remove", request=None, responses={204: None, **errors(403, 404)},
                   parameters=[OpenApiParameter("user_id", str, OpenApiParameter.PATH, pattern=f"^{ids.URL_PATTERN}$")])
    @action(detail=True, methods=["delete"], url_path=rf"members/(?P<user_id>{ids.URL_PATTERN})")
    def member_remove(self, request, group_id=None, user_id=None):
        """Remove a member: the member itself, in-group DOCTORs, staff."""
        group = self._group()
        if user_id != request.user.user_id:
            require_doctor(request.user, group)
        services.member_remove(group=group, user=user_by_public_id(user_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
