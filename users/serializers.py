from rest_framework import serializers
from rest_framework_simplejwt.exceptions import AuthenticationFailed
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer

from users.models import Role, User


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["user_id", "username", "user_role", "created_at", "updated_at"]
        read_only_fields = fields


class UserStatusSerializer(UserSerializer):
    class Meta(UserSerializer.Meta):
        fields = [*UserSerializer.Meta.fields, "is_active"]
        read_only_fields = fields


class UserCreateSerializer(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=64)
    user_role = serializers.ChoiceField(choices=Role.choices)
    password = serializers.CharField(required=False, allow_blank=False, write_only=True, max_length=128,
                                     style={"input_type": "password"})


class RoleChangeSerializer(serializers.Serializer):
    user_role = serializers.ChoiceField(choices=Role.choices)


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class LoginSerializer(TokenObtainPairSerializer):
    """`{username, password}` → `{access, refresh, user}`."""

    def validate(self, attrs):
        data = super().validate(attrs)
        data["user"] = UserSerializer(self.user).data
        return data


class LoginResponseSerializer(TokenPairSerializer):
    user = UserSerializer()


class AccessSerializer(serializers.Serializer):
    access = serializers.CharField()


class RefreshSerializer(TokenRefreshSerializer):
    """simplejwt's refresh, refusing a deleted user's token as it refuses a deactivated one's."""

    def validate(self, attrs):
        try:
            return super().validate(attrs)
        except User.DoesNotExist as exc:
            raise AuthenticationFailed(self.error_messages["no_active_account"], "no_active_account") from exc


class LogoutSerializer(serializers.Serializer):
    refresh = serializers.CharField()
