from django.conf import settings
from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from chat.models import CLIENT_MSG_ID_MAX, Message, MsgType
from users.models import Role

SEQ_MAX = 2**63 - 1  # the largest value of the seq column


class StrictCharField(serializers.CharField):
    """A JSON string only: a number or a boolean is a wrong type, as it is over the WebSocket."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def _iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def message_data(message: Message) -> dict:
    """The contract's Message; one shape for REST answers and pushes."""
    reply_to = message.reply_to
    return {
        "message_id": message.message_id,
        "group_id": message.group.group_id,
        "seq": message.seq,
        "from_user_id": message.sender.user_id,
        "from_role": message.from_role,
        "msg_type": message.msg_type,
        "content": message.content,
        "client_msg_id": message.client_msg_id,
        "reply_to": reply_to.message_id if reply_to is not None else None,
        "created_at": _iso(message.created_at),
    }


class MessageSerializer(serializers.Serializer):
    message_id = serializers.CharField()
    group_id = serializers.CharField()
    seq = serializers.IntegerField()
    from_user_id = serializers.CharField()
    from_role = serializers.ChoiceField(choices=Role.choices, help_text="The sender's in-group role when sent.")
    msg_type = serializers.ChoiceField(choices=MsgType.choices)
    content = serializers.CharField()
    client_msg_id = serializers.CharField(allow_null=True)
    reply_to = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()

    def to_representation(self, instance):
        return message_data(instance)


class SendSerializer(serializers.Serializer):
    group_id = serializers.CharField(max_length=64)
    # Length is checked by the service after trimming, so it can answer 413 rather than 400.
    content = StrictCharField(trim_whitespace=False, allow_blank=True)
    msg_type = serializers.ChoiceField(choices=[MsgType.TEXT, MsgType.IMAGE], default=MsgType.TEXT)
    client_msg_id = StrictCharField(max_length=CLIENT_MSG_ID_MAX, required=False, allow_null=True,
                                    allow_blank=False)


class ListParams(serializers.Serializer):
    group_id = serializers.CharField(max_length=64)
    after_seq = serializers.IntegerField(min_value=0, max_value=SEQ_MAX, required=False)
    limit = serializers.IntegerField(min_value=1, required=False)
    page = serializers.IntegerField(required=False)
    page_size = serializers.IntegerField(required=False)

    def validate(self, attrs):
        if "after_seq" in attrs:
            if "page" in attrs or "page_size" in attrs:
                raise serializers.ValidationError("Use either after_seq/limit or page/page_size, not both.")
            limit = attrs.get("limit", settings.IM_SYNC_LIMIT_DEFAULT)
            if limit > settings.IM_SYNC_LIMIT_MAX:
                raise serializers.ValidationError(
                    {"limit": [f"Ensure this value is less than or equal to {settings.IM_SYNC_LIMIT_MAX}."]})
            attrs["limit"] = limit
        elif "limit" in attrs:
            raise serializers.ValidationError({"limit": ["limit goes with after_seq."]})
        return attrs


class MessagePageSerializer(serializers.Serializer):
    """Paged history, newest first."""

    messages = MessageSerializer(many=True)
    total = serializers.IntegerField(help_text="Messages in the group.")
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()


class MessageCatchUpSerializer(serializers.Serializer):
    """Catch-up: the messages after `after_seq`, ascending."""

    messages = MessageSerializer(many=True)
    has_more = serializers.BooleanField(help_text="More messages follow: ask again after the last seq.")


# The two shapes of GET /api/message/list: `page`/`page_size` asks for the first, `after_seq`/`limit` the second.
MessageListSerializer = PolymorphicProxySerializer(
    component_name="MessageListResponse", serializers=[MessagePageSerializer, MessageCatchUpSerializer],
    resource_type_field_name=None)
