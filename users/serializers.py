from rest_framework import serializers
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer

from users.models import Role, User


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["user_id", "username", "user_role", "created_at", "updated_at"]
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
