from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from ai_bridge.views import AIInteractionViewSet, AITestViewSet
from chat.asyncapi import asyncapi_view
from chat.views import MessageViewSet
from groups.views import GroupViewSet
from imserver import errors, health, ids
from imserver.metrics_view import metrics_view
from records.views import AuditEventViewSet, GroupExportView
from users.views import LoginView, LogoutView, RefreshView, UserViewSet


class OptionalSlashRouter(SimpleRouter):
    """The contract: a trailing slash is accepted and optional everywhere."""

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("user", UserViewSet, basename="user")
router.register("group", GroupViewSet, basename="group")
router.register("message", MessageViewSet, basename="message")
router.register("ai/interactions", AIInteractionViewSet, basename="ai-interaction")
router.register("ai", AITestViewSet, basename="ai")
router.register("audit", AuditEventViewSet, basename="audit")

urlpatterns = [
    path("", TemplateView.as_view(template_name="chat/index.html"), name="chat-page"),
    re_path(r"^health/?$", health.health, name="health"),
    re_path(r"^health/ready/?$", health.ready, name="health-ready"),
    re_path(r"^metrics/?$", metrics_view, name="metrics"),
    re_path(r"^api/auth/token/?$", LoginView.as_view(), name="token"),
    re_path(r"^api/auth/token/refresh/?$", RefreshView.as_view(), name="token-refresh"),
    re_path(r"^api/auth/logout/?$", LogoutView.as_view(), name="logout"),
    re_path(rf"^api/group/(?P<group_id>{ids.URL_PATTERN})/export/?$", GroupExportView.as_view(), name="group-export"),
    re_path(r"^api/schema/?$", SpectacularAPIView.as_view(), name="schema"),
    re_path(r"^api/asyncapi\.yaml$", asyncapi_view, name="asyncapi"),
    re_path(r"^docs/?$", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    re_path(r"^redoc/?$", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api/", include(router.urls)),
    path("api-auth/", include("rest_framework.urls")),
    path("admin/", admin.site.urls),
]

handler400 = errors.json_bad_request
handler403 = errors.json_permission_denied
handler404 = errors.json_not_found
handler500 = errors.json_server_error
