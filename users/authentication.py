"""Access tokens for the REST API: simplejwt's, with the token's user from the process's user cache."""
from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import get_md5_hash_password

from users.usercache import users


class CachedUserJWTAuthentication(JWTAuthentication):
    """The signature and expiry are verified on every request as before; only the user's row may come from the
    cache (users.usercache), which never outlives a change of that user."""

    def get_user(self, validated_token):
        return self.user_check(validated_token, users.get(self._user_id(validated_token)))

    async def auser(self, raw_token: bytes):
        """The user of a bearer token, as get_user would answer it, from the server's event loop (users.usercache's
        aget); None when only a thread could tell. An invalid token, or a user refused, raises as DRF's would."""
        validated_token = self.get_validated_token(raw_token)
        user = await users.aget(self._user_id(validated_token))
        return None if user is None else self.user_check(validated_token, user)

    @staticmethod
    def _user_id(validated_token) -> str:
        try:
            return validated_token[api_settings.USER_ID_CLAIM]
        except KeyError as exc:
            raise InvalidToken(_("Token contained no recognizable user identification")) from exc

    @staticmethod
    def user_check(validated_token, user):
        if user is None:
            raise AuthenticationFailed(_("User not found"), code="user_not_found")
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        if api_settings.CHECK_REVOKE_TOKEN and \
                validated_token.get(api_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(user.password):
            raise AuthenticationFailed(_("The user's password has been changed."), code="password_changed")
        return user


class CachedUserJWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme: simplejwt's bearer token, as before."""

    target_class = CachedUserJWTAuthentication
