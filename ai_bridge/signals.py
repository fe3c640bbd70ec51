from django.db.models.signals import post_save
from django.dispatch import receiver

from ai_bridge.services import ai_record_open
from chat.models import Message, MsgType
from groups.models import ChatGroup
from users.models import Role


@receiver(post_save, sender=Message, dispatch_uid="ai_bridge.forward_patient_message")
def forward_patient_message(sender, instance: Message, created: bool, raw: bool = False, **kwargs):
    """Forward a new in-group PATIENT message of a group whose AI is on; a DOCTOR's message lifts a pause."""
    if raw or not created:
        return
    if instance.from_role == Role.DOCTOR and instance.group.ai_paused:
        # The group as the sender's request read it: a pause that began meanwhile waits for the next message.
        ChatGroup.objects.filter(pk=instance.group_id).update(ai_paused=False)
        return
    if instance.from_role != Role.PATIENT or instance.msg_type in (MsgType.AI_REPLY, MsgType.SYSTEM):
        return
    if not instance.group.ai_enabled:
        return
    ai_record_open(message=instance)
