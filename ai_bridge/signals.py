from django.db.models.signals import post_save
from django.dispatch import receiver

from ai_bridge.services import ai_record_open
from chat.models import Message, MsgType
from users.models import Role


@receiver(post_save, sender=Message, dispatch_uid="ai_bridge.forward_patient_message")
def forward_patient_message(sender, instance: Message, created: bool, raw: bool = False, **kwargs):
    """Forward a new in-group PATIENT message of a group whose AI is on; SYSTEM notices never are."""
    if raw or not created or instance.from_role != Role.PATIENT:
        return
    if instance.msg_type in (MsgType.AI_REPLY, MsgType.SYSTEM):
        return
    if not instance.group.ai_enabled:
        return
    ai_record_open(message=instance)
