from django.db.models.signals import post_save
from django.dispatch import receiver

from ai_bridge.services import ai_record_open
from chat.models import Message, MsgType
from users.models import Role


def forwarded(group, from_role: str, msg_type: str) -> bool:
    """Whether a new message is forwarded: an in-group PATIENT's, to a group whose AI is on; SYSTEM notices and
    AI replies never are."""
    return from_role == Role.PATIENT and msg_type not in (MsgType.AI_REPLY, MsgType.SYSTEM) and group.ai_enabled


@receiver(post_save, sender=Message, dispatch_uid="ai_bridge.forward_patient_message")
def forward_patient_message(sender, instance: Message, created: bool, raw: bool = False, **kwargs):
    """Open the AI record of a forwarded message, in the message's transaction."""
    if raw or not created or not forwarded(instance.group, instance.from_role, instance.msg_type):
        return
    ai_record_open(message=instance)
