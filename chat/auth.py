"""WebSocket authentication (`?token=` access JWT, else the session) and the Origin rule."""
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from users.models import User


@database_sync_to_async
def _user_for_token(raw: str):
    try:
        token = AccessToken(raw)
    except TokenError:
        return AnonymousUser()
    user = User.objects.filter(user_id=token.get(settings.SIMPLE_JWT["USER_ID_CLAIM"]), is_active=True).first()
    return user or AnonymousUser()


class TokenAuthMiddleware:
    """Sets scope["user"] from `?token=`; without one the session (inner stack) decides."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        token = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        if token:
            scope = dict(scope, user=await _user_for_token(token), token_auth=True)
        return await self.inner(scope, receive, send)


class _SessionUnlessToken:
    def __init__(self, inner):
        self.session_stack = AuthMiddlewareStack(inner)
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope.get("token_auth"):
            return await self.inner(scope, receive, send)
        return await self.session_stack(scope, receive, send)


class SameSiteOriginValidator(OriginValidator):
    """A browser's Origin must be one of ours; a client that sends none is judged by its token alone."""

    def valid_origin(self, parsed_origin):
        if parsed_origin is None:
            return True
        return super().valid_origin(parsed_origin)


def ws_auth_stack(inner):
    allowed = list(settings.ALLOWED_HOSTS) + list(settings.CORS_ALLOWED_ORIGINS)
    return SameSiteOriginValidator(TokenAuthMiddleware(_SessionUnlessToken(inner)), allowed)
