"""WebSocket authentication (`?token=` access JWT, else the session) and the Origin rule."""
from urllib.parse import parse_qs, urlsplit

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import split_domain_port, validate_host
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from users.models import User

CLOSE_TOKEN_INVALID, CLOSE_NOT_ALLOWED = 4401, 4403


@database_sync_to_async
def _token_scope(raw: str) -> dict:
    """What `?token=` adds to the scope: the user, when the token expires, and why a refusal is one."""
    try:
        token = AccessToken(raw)
    except TokenError:
        return {"user": AnonymousUser(), "auth_refusal": CLOSE_TOKEN_INVALID}
    user = User.objects.filter(user_id=token.get(settings.SIMPLE_JWT["USER_ID_CLAIM"])).first()
    if user is None or not user.is_active:  # a valid token of a deleted or deactivated user: do not retry
        return {"user": AnonymousUser(), "auth_refusal": CLOSE_NOT_ALLOWED}
    return {"user": user, "token_expires_at": float(token["exp"])}


class TokenAuthMiddleware:
    """Sets scope["user"] from `?token=`; without one the session (inner stack) decides."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        token = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        if token:
            scope = dict(scope, token_auth=True, **await _token_scope(token))
        return await self.inner(scope, receive, send)


class _SessionUnlessToken:
    def __init__(self, inner):
        self.session_stack = AuthMiddlewareStack(inner)
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope.get("token_auth"):
            return await self.inner(scope, receive, send)
        return await self.session_stack(scope, receive, send)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(text: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) origin, the port filled in from the scheme; None for anything else."""
    try:
        parts = urlsplit(text.strip().lower())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port


class SameSiteOriginValidator:
    """A browser's Origin must be this server's own (the scheme, host and port the handshake was made to, the host
    in ALLOWED_HOSTS) or exactly one of CORS_ALLOWED_ORIGINS; a client that sends none is judged by its token."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        headers = {name: value.decode("latin-1") for name, value in scope.get("headers", [])}
        if b"origin" not in headers or self.valid_origin(headers, scope.get("scheme")):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)

    @staticmethod
    def valid_origin(headers: dict, scheme: str | None) -> bool:
        """Whether the handshake's Origin is ours or an allowed other site's."""
        origin = _origin(headers[b"origin"])
        if origin is None:
            return False
        if origin in {_origin(allowed) for allowed in settings.CORS_ALLOWED_ORIGINS}:
            return True
        host = headers.get(b"host", "")
        # daphne puts no scheme in a WebSocket scope, so behind a TLS proxy the proxy's X-Forwarded-Proto tells.
        # Trusting it is safe here: this check protects browsers, and a page cannot set headers on a handshake.
        proto = headers.get(b"x-forwarded-proto", "").split(",")[0].strip().lower()
        secure = scheme in ("wss", "https") or proto in ("https", "wss")
        return origin == _origin(f"{'https' if secure else 'http'}://{host}") and \
            validate_host(split_domain_port(host)[0], settings.ALLOWED_HOSTS)


def ws_auth_stack(inner):
    """The WebSocket stack: the Origin rule, then the token or the session."""
    return SameSiteOriginValidator(TokenAuthMiddleware(_SessionUnlessToken(inner)))
