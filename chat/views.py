from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from chat.models import Message
from chat.serializers import ListParams, MessageListSerializer, MessageSerializer, SendSerializer, message_data
from chat.services import message_send
from groups.permissions import group_by_public_id, group_with_role, require_member
from imserver import ids
from imserver.dbrouter import replica_read
from imserver.errors import NotFound
from imserver.pagination import paginator_for
from imserver.schema import EXAMPLE_GROUP_ID, errors, example


@extend_schema(tags=["messages"])
class MessageViewSet(viewsets.GenericViewSet):
    serializer_class = MessageSerializer
    lookup_field = "message_id"
    lookup_value_regex = ids.URL_PATTERN
    pagination_class = paginator_for("messages")

    def get_queryset(self):
        return Message.objects.with_refs()

    @extend_schema(operation_id="message_send", request=SendSerializer,
                   responses={201: MessageSerializer, 200: MessageSerializer, **errors(403, 404, 429, body=True)},
                   examples=[example("text", {"group_id": EXAMPLE_GROUP_ID,
                                              "content": "How are you feeling today?", "client_msg_id": "dr-0001"},
                                     "A text message; client_msg_id makes a retry safe"),
                             example("image", {"group_id": EXAMPLE_GROUP_ID, "msg_type": "IMAGE",
                                               "content": "https://files.example.org/wound-day3.jpg"},
                                     "An image: the content is its URL")])
    @action(detail=False, methods=["post"])
    def send(self, request):
        """Send a message to a group; a repeated client_msg_id answers 200 with the first message."""
        body = SendSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        group, role = group_with_role(data["group_id"], request.user)
        message, created = message_send(sender=request.user, group=group, content=data["content"],
                                        msg_type=data["msg_type"], client_msg_id=data.get("client_msg_id"),
                                        via="http", sender_role=role)
        return Response(message_data(message), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(operation_id="message_get", responses={200: MessageSerializer, **errors(403, 404)})
    def retrieve(self, request, message_id=None):
        """One message, for members of its group and staff."""
        message = self.get_queryset().filter(message_id=message_id).first()
        if message is None:
            raise NotFound(f"No message {message_id!r}.")
        require_member(request.user, message.group)
        return Response(message_data(message))

    @extend_schema(
        operation_id="message_list",
        parameters=[
            OpenApiParameter("group_id", str, required=True),
            OpenApiParameter("after_seq", int, description="Catch-up: messages with seq > after_seq, ascending."),
            OpenApiParameter("limit", int, description="Catch-up page size (default 100, max 500)."),
            OpenApiParameter("page", int), OpenApiParameter("page_size", int),
        ],
        responses={200: MessageListSerializer, **errors(400, 403, 404)},
        description="Paged history, newest first; or with `after_seq`, a catch-up answer "
                    "`{messages, has_more}` in seq order.",
    )
    @action(detail=False, methods=["get"], url_path="list", pagination_class=paginator_for("messages"))
    def history(self, request):
        """A group's messages: paged newest first, or catch-up after a seq."""
        params = ListParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        group = group_by_public_id(params.validated_data["group_id"])
        require_member(request.user, group)
        # The group and membership come from the primary; the messages from a replica holding them up to last_seq.
        if "after_seq" in params.validated_data:
            def catch_up():
                messages, has_more = Message.objects.catch_up(
                    group, after_seq=params.validated_data["after_seq"], limit=params.validated_data["limit"])
                return {"messages": [message_data(m) for m in messages], "has_more": has_more}

            return Response(replica_read(catch_up, group=group))
        page = replica_read(lambda: [message_data(m) for m in self.paginate_queryset(
            self.get_queryset().filter(group=group).order_by("-seq"))], group=group)
        return self.get_paginated_response(page)


