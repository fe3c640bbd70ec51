from channels.routing import URLRouter
from django.urls import re_path

from chat.auth import ws_auth_stack
from chat.consumers import ChatConsumer

websocket_urlpatterns = [re_path(r"^ws/(?P<user_id>[^/]+)/?$", ChatConsumer.as_asgi())]

websocket_application = ws_auth_stack(URLRouter(websocket_urlpatterns))
