"""ASGI entry point: Django for HTTP, Channels consumers for the two WebSocket endpoints."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportdesk.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs Django set up first
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.signals import request_finished  # noqa: E402
from django.db import connections  # noqa: E402
from django.urls import path  # noqa: E402

from chat.transport import sweeper  # noqa: E402
from chat.transport.consumers import AgentConsumer, VisitorConsumer  # noqa: E402
from chat.transport.outage import CloseOnOutage  # noqa: E402
from inbox import outbound  # noqa: E402
from integrations import delivery  # noqa: E402
from kb import bot  # noqa: E402
from supportdesk.autobahn_logging import defer_debug_formatting  # noqa: E402
from supportdesk.daphne_forms import stop_twisted_parsing_forms  # noqa: E402
from supportdesk.daphne_sending import patch_daphne_sending, patch_immediate_writes  # noqa: E402

# A client that stops reading is disconnected instead of growing the worker's memory,
# and long frames (a `ready` with many messages) are not cut off at the inbound limit.
patch_daphne_sending(settings.SUPPORTDESK_WS_SEND_BUFFER)
# A frame written goes to the kernel at once, not a loop turn later.
patch_immediate_writes()
# A broken multipart body reaches the upload view (a JSON 400), not Twisted's empty 400.
stop_twisted_parsing_forms()
# Autobahn's debug lines are formatted only if written: not per socket and frame.
defer_debug_formatting()


def _close_request_connections(**kwargs) -> None:
    """Under ASGI every HTTP request runs its ORM calls on a thread of its own, so a
    persistent connection opened there is never reused: it stays open until garbage
    collection, and a burst of widget loads exhausted PostgreSQL's max_connections
    (docs/performance.md). Close it when the request ends (Django's advice for ASGI).
    The sockets' ORM threads live as long as the worker and keep theirs."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:  # a test's transaction is not ours to end
            connection.close()


request_finished.connect(_close_request_connections)

websocket_urlpatterns = [
    # Visitors authenticate with their token in `hello`; no session lookup needed.
    path("ws/visitor/", CloseOnOutage(VisitorConsumer.as_asgi())),
    path("ws/agent/", CloseOnOutage(AuthMiddlewareStack(AgentConsumer.as_asgi()))),
]

application = ProtocolTypeRouter(
    {"http": django_asgi_app, "websocket": URLRouter(websocket_urlpatterns)}
)


def start_worker_jobs() -> None:
    """A worker's own background work, started once its event loop runs
    (supportdesk/serve.py): the periodic sweep, the webhook deliveries, the replies to
    mail, and the bot's answers and sweep. Safe on every worker at once: each acts only
    on what the database says is due, under row locks."""
    sweeper.ensure_running()
    delivery.ensure_running()
    outbound.ensure_running()
    bot.ensure_running()
