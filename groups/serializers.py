from django.conf import settings
from rest_framework import serializers

from groups.models import AIMode, ChatGroup, GroupMember
from users.models import Role

SEQ_MAX = 2**63 - 1  # the largest value of a seq column


class GroupSerializer(serializers.ModelSerializer):
    created_by = serializers.SerializerMethodField()
    member_count = serializers.SerializerMethodField()
    ai_enabled = serializers.BooleanField(read_only=True)
    # The caller's read state, from ChatGroup.objects.with_read_state(caller); null for a staff non-member.
    last_read_seq = serializers.IntegerField(source="read_seq", read_only=True, allow_null=True)
    unread_count = serializers.IntegerField(source="unread", read_only=True, allow_null=True)

    class Meta:
        model = ChatGroup
        fields = ["group_id", "group_name", "description", "created_by", "ai_enabled", "ai_mode", "ai_paused",
                  "member_count", "last_seq", "last_read_seq", "unread_count", "created_at", "updated_at"]
        read_only_fields = fields

    def get_created_by(self, group) -> str | None:
        return group.created_by.user_id if group.created_by else None

    def get_member_count(self, group) -> int:
        count = getattr(group, "member_count", None)
        return count if count is not None else group.memberships.count()


class MemberSerializer(serializers.ModelSerializer):
    user_id = serializers.CharField(source="user.user_id")
    username = serializers.CharField(source="user.username")

    class Meta:
        model = GroupMember
        fields = ["user_id", "username", "user_role", "joined_at", "last_read_seq"]
        read_only_fields = fields


class MemberInSerializer(serializers.Serializer):
    user_id = serializers.CharField(max_length=48)
    user_role = serializers.ChoiceField(choices=Role.choices)


class GroupCreateSerializer(serializers.Serializer):
    group_name = serializers.CharField(max_length=128)
    description = serializers.CharField(required=False, allow_blank=True, default="",
                                        max_length=settings.IM_MAX_DESCRIPTION_CHARS)
    members = MemberInSerializer(many=True, required=False, default=list)

    def validate_members(self, members):
        ids = [m["user_id"] for m in members]
        if len(ids) != len(set(ids)):
            raise serializers.ValidationError("A user is listed twice.")
        return members


class GroupUpdateSerializer(serializers.Serializer):
    group_name = serializers.CharField(max_length=128, required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=settings.IM_MAX_DESCRIPTION_CHARS)
    ai_enabled = serializers.BooleanField(required=False)
    ai_mode = serializers.ChoiceField(choices=AIMode.choices, required=False)

    def validate(self, attrs):
        if "ai_enabled" in attrs and "ai_mode" in attrs and attrs["ai_enabled"] != (attrs["ai_mode"] != AIMode.OFF):
            raise serializers.ValidationError("ai_enabled and ai_mode disagree; send one of them.")
        return attrs


class MemberListSerializer(serializers.Serializer):
    members = MemberSerializer(many=True)


class ReadSerializer(serializers.Serializer):
    seq = serializers.IntegerField(min_value=0, max_value=SEQ_MAX, help_text="The highest seq the caller has seen.")


class ReadStateSerializer(serializers.Serializer):
    group_id = serializers.CharField()
    last_read_seq = serializers.IntegerField()
    unread_count = serializers.IntegerField()
