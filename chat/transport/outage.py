"""When the database or Redis is down: sockets close with 4503, "reconnect later"."""

import logging

from django.db import InterfaceError, OperationalError

from ..protocol import CLOSE_UNAVAILABLE
from ..realtime.layer import LAYER_ERRORS

logger = logging.getLogger(__name__)

# A socket ended by an outage closes with 4503 instead of a 500 at the handshake or 1011.
OUTAGE_ERRORS = (OperationalError, InterfaceError, *LAYER_ERRORS)


class CloseOnOutage:
    """ASGI middleware for the socket routes: when the database or Redis is down and a
    socket cannot be served (the session lookup, the consumer's channel, `hello`, the
    agent's `ready`), the client gets close 4503 at once."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        accepted = closed = False

        async def watched_send(message: dict) -> None:
            nonlocal accepted, closed
            if message["type"] == "websocket.accept":
                accepted = True
            elif message["type"] == "websocket.close":
                closed = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except OUTAGE_ERRORS as exc:
            logger.error("socket %s closed, service unavailable: %r", scope.get("path"), exc)
            if closed:
                return
            if not accepted:
                # Still in the handshake: accept so the close code reaches the client.
                await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": CLOSE_UNAVAILABLE})
