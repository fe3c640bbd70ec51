from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status, views, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from imserver import ids
from imserver.errors import Conflict
from imserver.schema import errors, example
from imserver.throttling import LoginRateThrottle
from users import services
from users.models import User
from users.permissions import IsStaff
from users.serializers import (
    AccessSerializer,
    LoginResponseSerializer,
    LoginSerializer,
    LogoutSerializer,
    RefreshSerializer,
    RoleChangeSerializer,
    TokenPairSerializer,
    UserCreateSerializer,
    UserSerializer,
    UserStatusSerializer,
)

_REFRESH = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..."


@extend_schema_view(post=extend_schema(
    tags=["auth"], operation_id="auth_token_obtain",
    responses={200: LoginResponseSerializer, **errors(401, 429, body=True, anonymous=True)},
    examples=[example("login", {"username": "dr_chen", "password": "doctor-demo-pass"}, "Log in")]))
class LoginView(TokenObtainPairView):
    """Exchange a username and password for an access and a refresh token."""

    serializer_class = LoginSerializer
    throttle_classes = [LoginRateThrottle]


@extend_schema_view(post=extend_schema(
    tags=["auth"], operation_id="auth_token_refresh",
    responses={200: AccessSerializer, **errors(401, body=True, anonymous=True)},
    examples=[example("refresh", {"refresh": _REFRESH}, "A refresh token from auth_token_obtain")]))
class RefreshView(TokenRefreshView):
    """Exchange a refresh token for a new access token."""

    serializer_class = RefreshSerializer


@extend_schema_view(post=extend_schema(
    tags=["auth"], operation_id="auth_logout", request=LogoutSerializer,
    responses={204: None, **errors(403, body=True)},
    examples=[example("logout", {"refresh": _REFRESH}, "The caller's own refresh token")]))
class LogoutView(views.APIView):
    """Refuse the caller's refresh token from now on."""

    def post(self, request):
        body = LogoutSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.user_logout(user=request.user, refresh=body.validated_data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["users"])
class UserViewSet(viewsets.GenericViewSet):
    queryset = User.objects.all()
    serializer_class = UserSerializer
    lookup_field = "user_id"
    lookup_value_regex = ids.URL_PATTERN

    def get_permissions(self):
        if self.action in ("create_user", "role", "token", "deactivate", "reactivate"):
            return [IsStaff()]
        return super().get_permissions()

    @extend_schema(operation_id="user_create", request=UserCreateSerializer,
                   responses={201: UserSerializer, **errors(403, 409, body=True)},
                   examples=[example("patient", {"username": "zhang_san", "user_role": "PATIENT"},
                                     "A patient without a password (tokens come from user_token)"),
                             example("doctor", {"username": "dr_wu", "user_role": "DOCTOR",
                                                "password": "a long passphrase"}, "A doctor who logs in")])
    @action(detail=False, methods=["post"], url_path="create")
    def create_user(self, request):
        """Create a user (staff)."""
        body = UserCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        user = services.user_create(**body.validated_data)
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="user_me", responses={200: UserSerializer, **errors()})
    @action(detail=False, methods=["get"])
    def me(self, request):
        """The calling user."""
        return Response(UserSerializer(request.user).data)

    @extend_schema(operation_id="user_get", responses={200: UserSerializer, **errors(404)})
    def retrieve(self, request, user_id=None):
        """One user by id."""
        return Response(UserSerializer(self.get_object()).data)

    @extend_schema(operation_id="user_role_set", request=RoleChangeSerializer,
                   responses={200: UserSerializer, **errors(403, 404, body=True)},
                   examples=[example("doctor", {"user_role": "DOCTOR"}, "Make the user a doctor")])
    @action(detail=True, methods=["put"])
    def role(self, request, user_id=None):
        """Change a user's system role (staff)."""
        user = self.get_object()
        body = RoleChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(UserSerializer(services.user_role_change(user=user, **body.validated_data)).data)

    @extend_schema(operation_id="user_token", request=None,
                   responses={200: TokenPairSerializer, **errors(403, 404, 409)})
    @action(detail=True, methods=["post"])
    def token(self, request, user_id=None):
        """Mint tokens for a user, e.g. one without a password (staff, server-to-server)."""
        user = self.get_object()
        if not user.is_active:
            raise Conflict("The user is deactivated.", details={"user_id": user.user_id})
        return Response(services.user_tokens(user=user))

    @extend_schema(operation_id="user_deactivate", request=None,
                   responses={200: UserStatusSerializer, **errors(403, 404)})
    @action(detail=True, methods=["post"])
    def deactivate(self, request, user_id=None):
        """Refuse the user's tokens and close their connections on every server (staff); messages stay."""
        return Response(UserStatusSerializer(services.user_deactivate(user=self.get_object())).data)

    @extend_schema(operation_id="user_reactivate", request=None,
                   responses={200: UserStatusSerializer, **errors(403, 404)})
    @action(detail=True, methods=["post"])
    def reactivate(self, request, user_id=None):
        """Let a deactivated user log in again (staff)."""
        return Response(UserStatusSerializer(services.user_reactivate(user=self.get_object())).data)


LoginView.permission_classes = [AllowAny]
RefreshView.permission_classes = [AllowAny]
