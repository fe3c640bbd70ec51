from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.db import models

from imserver import ids


class Role(models.TextChoices):
    PATIENT = "PATIENT", "Patient"
    DOCTOR = "DOCTOR", "Doctor"
    AI_ASSISTANT = "AI_ASSISTANT", "AI assistant"


class UserManager(BaseUserManager):
    use_in_migrations = True

    def get_by_natural_key(self, username):
        return self.get(username=username)

    def by_name_or_id(self, name_or_id: str):
        """The user with this username or user_id (the commands take either), or None."""
        return self.filter(models.Q(username=name_or_id) | models.Q(user_id=name_or_id)).first()

    def create_user(self, username, password=None, **extra):
        # Django's own commands (createsuperuser) land here; everything else calls users.services.
        from users.services import user_create  # users.services imports this module: a cycle at import

        return user_create(username=username, password=password, **extra)

    def create_superuser(self, username, password=None, **extra):
        extra.update(is_staff=True, is_superuser=True)
        extra.setdefault("user_role", Role.DOCTOR)
        return self.create_user(username, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person or the AI assistant. `groups` (from PermissionsMixin) are Django's permission groups;
    care-team membership is `memberships` (groups.GroupMember)."""

    user_id = models.CharField(max_length=48, unique=True, default=ids.user_id, editable=False)
    username = models.CharField(max_length=64, unique=True, validators=[UnicodeUsernameValidator()])
    user_role = models.CharField(max_length=32, choices=Role.choices, default=Role.PATIENT, db_index=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserManager()

    USERNAME_FIELD = "username"
    REQUIRED_FIELDS = ["user_role"]

    class Meta:
        db_table = "users"
        ordering = ["id"]

    def __str__(self):
        return f"{self.username} ({self.user_role})"
