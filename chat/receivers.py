"""Pushes that follow writes no service sees: memberships and users deleted by a cascade or the admin.

A deactivated or deleted user's connections close on every server process, and a deleted membership's
connections leave its group, whatever path wrote it (the services, the admin, a cascade, a shell)."""
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from groups.models import ChatGroup, GroupMember
from imserver import publish
from users.models import User

CLOSE_NOT_ALLOWED = 4403


@receiver(post_save, sender=User, dispatch_uid="chat.user_saved")
def _user_saved(sender, instance: User, created: bool, **kwargs):
    if not created and not instance.is_active:
        user_id = instance.user_id
        transaction.on_commit(lambda: publish.connections_close(user_id, code=CLOSE_NOT_ALLOWED))


@receiver(post_delete, sender=User, dispatch_uid="chat.user_deleted")
def _user_deleted(sender, instance: User, **kwargs):
    user_id = instance.user_id
    transaction.on_commit(lambda: publish.connections_close(user_id, code=CLOSE_NOT_ALLOWED))


@receiver(post_delete, sender=GroupMember, dispatch_uid="chat.member_deleted")
def _member_deleted(sender, instance: GroupMember, **kwargs):
    # In a cascade the member's group and user rows are deleted after it, in the same transaction: read
    # their public ids now (cached when the member was loaded with them).
    group_id = instance.group.group_id if GroupMember.group.is_cached(instance) else \
        ChatGroup.objects.filter(pk=instance.group_id).values_list("group_id", flat=True).first()
    user_id = instance.user.user_id if GroupMember.user.is_cached(instance) else \
        User.objects.filter(pk=instance.user_id).values_list("user_id", flat=True).first()
    if group_id and user_id:
        transaction.on_commit(lambda: publish.member_left(group_id=group_id, user_id=user_id,
                                                           user_role=instance.user_role))
