"""ASGI entry point: HTTP through Django (an API client's send on the event loop: chat.gate), WebSocket through
the chat consumer."""
import asyncio
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import django
from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

from imserver.patches import SyncMiddlewareChainMixin

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imserver.settings")


class ASGIRequestHandler(SyncMiddlewareChainMixin, ASGIHandler):
    """Django's ASGI handler with fewer thread switches per request; the same middleware, views and signals.

    Django's own runs each request's sync code in a thread it starts for that request and joins after, and
    puts its async request path innermost: behind sync middleware (all of ours) a request goes from the event
    loop to that thread for the middleware, back to the loop to resolve the URL, and to the thread again for
    the view. Here the middleware and the view run in one go (imserver.patches), in a thread kept for the next
    request."""

    def __init__(self):
        super().__init__()
        self._idle_threads: list[ThreadPoolExecutor] = []  # touched only on the event loop

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)  # Django's refusal
        thread = self._idle_threads.pop() if self._idle_threads else \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="http")
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self.handle(scope, receive, send)
        finally:
            if len(self._idle_threads) < settings.ASGI_IDLE_THREADS:
                self._idle_threads.append(thread)
            else:
                thread.shutdown(wait=False)


django.setup(set_prefix=False)
# The event loop and the threads running sync code hand the GIL to each other several times per message; a
# shorter switch interval than Python's 5 ms keeps a waiting thread from sitting out a whole one each time.
sys.setswitchinterval(settings.ASGI_SWITCH_INTERVAL)
django_asgi_app = ASGIRequestHandler()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from chat.gate import SendGate  # noqa: E402
from chat.routing import websocket_application  # noqa: E402
from imserver import publish  # noqa: E402
from imserver.gcfreeze import freeze_loaded  # noqa: E402


class Application(ProtocolTypeRouter):
    """HTTP and WebSocket; the loop serving them also publishes the pushes its threads decide (imserver.publish)."""

    async def __call__(self, scope, receive, send):
        publish.publish_on(asyncio.get_running_loop())
        return await super().__call__(scope, receive, send)


application = Application({"http": SendGate(django_asgi_app), "websocket": websocket_application})
freeze_loaded()
