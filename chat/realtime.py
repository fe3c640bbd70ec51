"""The pushes of stored messages and of frames for some members only; names and publishing are imserver.publish."""
import time

from chat.models import MsgType
from chat.serializers import message_data
from groups.models import GroupMember
from imserver.publish import frame_text, group_channel, publish, user_channel


def message_frame(message) -> dict:
    """The push frame of a stored message: its fields at top level plus `type`."""
    data = message_data(message)
    data["type"] = "ai_reply" if message.msg_type == MsgType.AI_REPLY else "message"
    return data


def message_push(message) -> None:
    """Push a stored message to every connection of its group (called on commit).

    The frame is serialized here, once, not by each connection; group_id and seq ride along for the
    connections' filters."""
    frame = message_frame(message)
    publish(group_channel(frame["group_id"]), {"type": "chat.message", "group_id": frame["group_id"],
                                                "seq": frame["seq"], "text": frame_text(frame),
                                                "sent_at": time.time()})


def role_event(*, group, role: str, frame: dict) -> None:
    """Push a frame to the connections of the group's members with this in-group role only (drafts and
    escalations are for its doctors): through each one's own channel, never the group's."""
    for user_id in GroupMember.objects.filter(group=group, user_role=role).values_list("user__user_id", flat=True):
        publish(user_channel(user_id), {"type": "direct.event", "frame": frame})
