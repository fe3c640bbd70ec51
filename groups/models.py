import functools

from django.conf import settings
from django.db import connections, models
from django.db.models import Count, F, OuterRef, Subquery
from django.db.models.functions import Coalesce

from imserver import asyncdb, ids
from users.models import Role


class AIMode(models.TextChoices):
    AUTO = "auto", "Auto: the AI's answer is posted"
    REVIEW = "review", "Review: a doctor approves each answer"
    OFF = "off", "Off: a doctor has taken over"


class ChatGroupQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Groups the user belongs to; staff see all."""
        if user.is_staff:
            return self
        # A subquery, not a join: a join would also narrow any later Count("memberships") to the caller.
        return self.filter(pk__in=GroupMember.objects.filter(user=user).values("group"))

    def with_read_state(self, user):
        """Annotate the user's `read_seq` (their last_read_seq, None for a non-member) and `unread`: seq arithmetic
        less the user's own messages after the watermark, counted on chat's (sender, group, seq) index, never a
        COUNT over the group's messages."""
        mine = GroupMember.objects.filter(group=OuterRef("pk"), user=user).values("last_read_seq")[:1]
        # Through the reverse relation chat's Message declares (`messages`): groups imports nothing of chat.
        own_after = (ChatGroup.objects.filter(pk=OuterRef("pk"), messages__sender=user,
                                              messages__seq__gt=OuterRef("read_seq"))
                     .values("pk").annotate(n=Count("messages")).values("n"))
        return (self.annotate(read_seq=Subquery(mine))
                .annotate(unread=F("last_seq") - F("read_seq") - Coalesce(Subquery(own_after), 0)))

    def with_role_of(self, group_id: str, user) -> tuple["ChatGroup | None", str | None]:
        """The group by public id (None without one) and the user's in-group role (None for a non-member).

        One plain statement, for it runs on every send: 0.22 ms of CPU against 0.38 ms as a raw queryset and
        1.2 ms with the ORM's `annotate(Subquery(...))` (measured in one process on PostgreSQL)."""
        with connections[self.db].cursor() as cursor:
            cursor.execute(self._role_of_sql(), [user.pk, group_id])
            return self._with_role(cursor.fetchone(), self.db)

    async def awith_role_of(self, group_id: str, user, conn=None) -> tuple["ChatGroup | None", str | None]:
        """with_role_of from the server's event loop (imserver.asyncdb), for the direct send path."""
        return self._with_role(await asyncdb.fetchone(self._role_of_sql(), [user.pk, group_id], conn),
                               asyncdb.ALIAS)

    def _role_of_sql(self) -> str:
        return _role_of_sql(self.model)

    def _with_role(self, row, alias: str) -> tuple["ChatGroup | None", str | None]:
        # as the ORM converts them (SQLite's datetimes are text)
        return (None, None) if row is None else (asyncdb.instance(self.model, row, alias), row[-1])


@functools.cache
def _role_of_sql(model) -> str:
    """with_role_of's statement, built once per process."""
    return (f"SELECT {asyncdb.columns(model, 'g')}, (SELECT m.user_role FROM {GroupMember._meta.db_table} m"
            f" WHERE m.group_id = g.id AND m.user_id = %s) FROM {model._meta.db_table} g WHERE g.group_id = %s")


class ChatGroup(models.Model):
    """A care team: its members talk in one ordered stream of messages.

    Named ChatGroup so that it is never mistaken for django.contrib.auth's permission Group."""

    group_id = models.CharField(max_length=64, unique=True, default=ids.group_id, editable=False)
    group_name = models.CharField(max_length=128)
    description = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="created_groups"
    )
    ai_mode = models.CharField(max_length=8, choices=AIMode.choices, default=AIMode.AUTO)
    # An escalation waits for a doctor: the AI stays silent until an in-group DOCTOR writes.
    ai_paused = models.BooleanField(default=False, editable=False)
    last_seq = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ChatGroupQuerySet.as_manager()

    class Meta:
        db_table = "groups"
        ordering = ["-id"]
        verbose_name = "group"

    def __str__(self):
        return f"{self.group_name} ({self.group_id})"

    @property
    def ai_enabled(self) -> bool:
        """The doctor's switch as the contract names it: the AI answers (auto or review) or stays off."""
        return self.ai_mode != AIMode.OFF


class GroupMember(models.Model):
    """A user's membership of a group, with the in-group role every routing decision uses."""

    group = models.ForeignKey(ChatGroup, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    user_role = models.CharField(max_length=32, choices=Role.choices)
    joined_at = models.DateTimeField(auto_now_add=True)
    # The highest seq the member has read: moves only forward, never past the group's last_seq (groups.services).
    last_read_seq = models.BigIntegerField(default=0, editable=False)

    class Meta:
        db_table = "group_members"
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["group", "user"], name="uq_group_member")]
        indexes = [models.Index(fields=["user", "group"], name="ix_member_user_group")]
        verbose_name = "member"

    def __str__(self):
        return f"{self.user_id}@{self.group_id} ({self.user_role})"
