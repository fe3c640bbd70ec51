"""The only write paths for users."""
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from imserver.audit import audit
from imserver.errors import Conflict, NotAuthenticated, PermissionDeniedError, ValidationFailed
from users.models import Role, User


def check_role(user_role: str) -> None:
    """Refuse anything but the three roles."""
    if user_role not in Role.values:
        raise ValidationFailed(
            f"user_role must be one of {', '.join(Role.values)}.", details={"user_role": [f"Unknown role {user_role!r}."]}
        )


def user_create(
    *,
    username: str,
    user_role: str = Role.PATIENT,
    password: str | None = None,
    is_staff: bool = False,
    is_superuser: bool = False,
) -> User:
    """Create a user; without a password the user can only get tokens minted by staff."""
    check_role(user_role)
    user = User(username=username, user_role=user_role, is_staff=is_staff, is_superuser=is_superuser)
    if password:
        try:
            validate_password(password, user)
        except DjangoValidationError as exc:
            raise ValidationFailed(exc.messages[0], details={"password": exc.messages}) from exc
        user.set_password(password)
    else:
        user.set_unusable_password()
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:
        raise Conflict(f"The username {username!r} is taken.", details={"username": ["taken"]}) from exc
    return user


@transaction.atomic
def user_role_change(*, user: User, user_role: str) -> User:
    """Change a user's system role (in-group roles are left as they are)."""
    check_role(user_role)
    before = user.user_role
    user.user_role = user_role
    user.save(update_fields=["user_role", "updated_at"])
    if before != user_role:
        audit(action="user.role_change", target=user.user_id, details={"from": before, "to": user_role})
    return user


def user_update(*, user: User, is_staff: bool | None = None, is_active: bool | None = None,
                password: str | None = None) -> User:
    """Operator changes to a user's flags and password."""
    if is_active is False and user.is_active:
        user_deactivate(user=user)
    elif is_active is True and not user.is_active:
        user_reactivate(user=user)
    fields = ["updated_at"]
    if is_staff is not None:
        user.is_staff = is_staff
        fields.append("is_staff")
    if password:
        user.set_password(password)
        fields.append("password")
    user.save(update_fields=fields)
    return user


def user_tokens(*, user: User) -> dict:
    """A fresh access and refresh token pair for the user."""
    refresh = RefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


@transaction.atomic
def user_deactivate(*, user: User) -> User:
    """Refuse the user's tokens from now on and close their connections; their messages stay.

    Access tokens are refused because the user is inactive (REST and WebSocket check it), refresh tokens
    because they are blacklisted; the open connections are closed by chat's receiver of the save."""
    if user.is_active:
        audit(action="user.deactivate", target=user.user_id)
    user.is_active = False
    user.save(update_fields=["is_active", "updated_at"])
    outstanding = (OutstandingToken.objects.filter(user=user, expires_at__gt=timezone.now())
                   .exclude(blacklistedtoken__isnull=False))
    BlacklistedToken.objects.bulk_create([BlacklistedToken(token=token) for token in outstanding],
                                         ignore_conflicts=True)
    return user


@transaction.atomic
def user_reactivate(*, user: User) -> User:
    """Let the user in again; tokens refused by the deactivation stay refused (they log in anew)."""
    if not user.is_active:
        audit(action="user.reactivate", target=user.user_id)
    user.is_active = True
    user.save(update_fields=["is_active", "updated_at"])
    return user


def user_logout(*, user: User, refresh: str) -> None:
    """Refuse one refresh token of the user's from now on."""
    try:
        token = RefreshToken(refresh)
    except TokenError as exc:
        raise NotAuthenticated("The refresh token is invalid or expired.",
                               details={"token_code": "token_not_valid"}) from exc
    if token.get(jwt_settings.USER_ID_CLAIM) != user.user_id:
        raise PermissionDeniedError("That refresh token belongs to another user.")
    token.blacklist()
