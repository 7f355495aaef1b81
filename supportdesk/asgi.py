"""ASGI entry point: Django for HTTP, Channels consumers for the two WebSocket endpoints."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportdesk.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs Django set up first
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from chat.consumers import AgentConsumer, VisitorConsumer  # noqa: E402

websocket_urlpatterns = [
    # Visitors authenticate with their token in `hello`; no session lookup needed.
    path("ws/visitor/", VisitorConsumer.as_asgi()),
    path("ws/agent/", AuthMiddlewareStack(AgentConsumer.as_asgi())),
]

application = ProtocolTypeRouter(
    {"http": django_asgi_app, "websocket": URLRouter(websocket_urlpatterns)}
)
