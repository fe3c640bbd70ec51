"""Access tokens for the REST API: simplejwt's, with the token's user from the process's user cache."""
import base64
import threading
import time

import jwt
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import get_md5_hash_password

from users.usercache import users


class ParsedTokens:
    """Access tokens this process has validated through simplejwt, by their text (AUTH_TOKEN_CACHE_SIZE of them).

    A client sends the same token with every request until it expires, and simplejwt reads it anew each time:
    base64, two JSON documents, the key prepared, the claims checked (three quarters of an API send's
    authentication; 108 µs in a loop on a slow machine). Here a token seen before skips the parsing (5 µs), and
    still has its signature verified (PyJWT's algorithm, the key prepared once) and its expiry checked on every
    request; an expired one goes back to simplejwt, which refuses it in its own words. HMAC algorithms only (no key
    to fetch)."""

    def __init__(self):
        self._tokens: dict[bytes, tuple] = {}  # raw token -> (token, signing input, signature, exp)
        self._lock = threading.Lock()
        self._verifier = None  # (PyJWT's algorithm, the prepared key, the leeway in seconds), swapped as one

    def _ready(self, token) -> bool:
        if self._verifier is None:
            backend = token.get_token_backend()
            if not backend.algorithm.startswith("HS"):
                return False
            self._verifier = (jwt.PyJWS().get_algorithm_by_name(backend.algorithm), backend.prepared_signing_key,
                              backend.get_leeway().total_seconds())
        return True

    def get(self, raw_token: bytes):
        """The validated token, if this text was validated before and its signature and expiry still hold."""
        entry, verifier = self._tokens.get(raw_token), self._verifier
        if entry is None or verifier is None:
            return None
        token, signing_input, signature, expires_at = entry
        algorithm, key, leeway = verifier
        if expires_at <= time.time() - leeway or not algorithm.verify(signing_input, key, signature):
            self._tokens.pop(raw_token, None)
            return None
        return token

    def keep(self, raw_token: bytes, token) -> None:
        """Remember a token simplejwt has just validated."""
        size = settings.AUTH_TOKEN_CACHE_SIZE
        expires_at = token.get("exp")
        if size <= 0 or not isinstance(raw_token, bytes) or not isinstance(expires_at, (int, float)) or \
                not self._ready(token):
            return  # a str token (simplejwt takes both) is validated by simplejwt every time
        signing_input, _, signature = raw_token.rpartition(b".")
        entry = (token, signing_input, base64.urlsafe_b64decode(signature + b"=" * (-len(signature) % 4)),
                 expires_at)
        with self._lock:
            while len(self._tokens) >= size:  # the oldest first
                self._tokens.pop(next(iter(self._tokens)))
            self._tokens[raw_token] = entry


    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._verifier = None


parsed_tokens = ParsedTokens()


@receiver(setting_changed)
def _tokens_forget(setting, **kwargs):
    if setting in ("SIMPLE_JWT", "AUTH_TOKEN_CACHE_SIZE"):  # another key or algorithm: parse everything anew
        parsed_tokens.clear()


class CachedUserJWTAuthentication(JWTAuthentication):
    """The signature and expiry are verified on every request as before; the token's parsing may come from the
    process's ParsedTokens, and the user's row from the cache (users.usercache), which never outlives a change of
    that user."""

    def get_validated_token(self, raw_token: bytes):
        token = parsed_tokens.get(raw_token)
        if token is None:
            token = super().get_validated_token(raw_token)
            parsed_tokens.keep(raw_token, token)
        return token

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
