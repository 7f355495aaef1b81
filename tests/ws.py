"""WebSocket test helpers: communicators against the real ASGI application (routing and
AuthMiddlewareStack included), and ways to wait for a frame or a close with a timeout."""

import asyncio
import json
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from chat.transport import broadcasting
from supportdesk.asgi import application

# The test client's host; pytest-django's test environment adds it to ALLOWED_HOSTS,
# which `origins.is_own_origin` requires besides Origin's host:port matching Host.
APP_HOST = "testserver"
APP_ORIGIN = f"http://{APP_HOST}"
ACME_ORIGIN = "https://acme.example"
FOREIGN_ORIGIN = "https://evil.example"

TIMEOUT = 5.0


def _headers(origin: str | None, host: str | None, cookie: str | None = None) -> list:
    headers = []
    if host is not None:
        headers.append((b"host", host.encode()))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    return headers


def visitor_communicator(
    *, origin: str | None = ACME_ORIGIN, host: str | None = APP_HOST
) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/ws/visitor/", headers=_headers(origin, host))


def agent_communicator(
    cookie: str | None, *, origin: str | None = APP_ORIGIN, host: str | None = APP_HOST
) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/ws/agent/", headers=_headers(origin, host, cookie))


async def session_cookie(user) -> str:
    """A `Cookie` header value carrying a real Django session logged in as `user`."""

    def login() -> str:
        client = Client()
        client.force_login(user)
        name = settings.SESSION_COOKIE_NAME
        return f"{name}={client.cookies[name].value}"

    return await database_sync_to_async(login)()


def hello(site_key: str, token: str, last_seq: int | None = None) -> dict:
    frame: dict[str, Any] = {"type": "hello", "site_key": site_key, "visitor_token": token}
    if last_seq is not None:
        frame["last_seq"] = last_seq
    return frame


async def _next_output(communicator: WebsocketCommunicator, deadline: float) -> dict:
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0:
        raise TimeoutError
    return await communicator.receive_output(timeout=remaining)


async def receive_frames_until(
    communicator: WebsocketCommunicator, frame_type: str, *, timeout: float = TIMEOUT
) -> tuple[dict, list[dict]]:
    """Receive frames until one of `frame_type` arrives; returns it and the frames before it.
    Fails if the socket is closed first or nothing of that type comes within `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    before: list[dict] = []
    while True:
        try:
            output = await _next_output(communicator, deadline)
        except TimeoutError:
            raise AssertionError(
                f"no {frame_type!r} frame within {timeout}s; got {before!r}"
            ) from None
        if output["type"] == "websocket.close":
            raise AssertionError(
                f"socket closed with {output.get('code')} while waiting for {frame_type!r};"
                f" got {before!r}"
            )
        assert output["type"] == "websocket.send", output
        frame = json.loads(output["text"])
        if frame["type"] == frame_type:
            return frame, before
        before.append(frame)


async def receive_until(
    communicator: WebsocketCommunicator, frame_type: str, *, timeout: float = TIMEOUT
) -> dict:
    """The first frame of `frame_type`, skipping others, within `timeout`."""
    frame, _before = await receive_frames_until(communicator, frame_type, timeout=timeout)
    return frame


async def receive_close(
    communicator: WebsocketCommunicator, *, timeout: float = TIMEOUT
) -> tuple[int, list[dict]]:
    """Wait for the server to close the socket; returns the close code and the frames
    received before the close."""
    deadline = asyncio.get_running_loop().time() + timeout
    before: list[dict] = []
    while True:
        try:
            output = await _next_output(communicator, deadline)
        except TimeoutError:
            raise AssertionError(f"socket not closed within {timeout}s; got {before!r}") from None
        if output["type"] == "websocket.close":
            return output.get("code", 1000), before
        assert output["type"] == "websocket.send", output
        before.append(json.loads(output["text"]))


async def frames_before_pong(communicator: WebsocketCommunicator) -> list[dict]:
    """Everything the socket receives before the answer to a fresh ping.

    A barrier instead of a sleep: the queue readings asked for so far (made on this loop
    after their service returned, chat/conversations/queue.py `QueueReadings`) are waited
    for, then every broadcast waiting in a socket's channel is taken and handled by its
    consumer, and only then is the ping sent, so whatever was due shows up here.

    The channel layer must be drained first: a consumer that finds a client frame and a
    channel event ready at the same moment handles the client frame first (Channels'
    await_many_dispatch), so a ping sent while an event still waits would overtake it."""
    await broadcasting.queue_readings().settled()
    await _channel_events_handled()
    await communicator.send_json_to({"type": "ping"})
    _pong, before = await receive_frames_until(communicator, "pong")
    return before


async def _channel_events_handled() -> None:
    """Yield to the event loop until the in-memory channel layer holds no waiting event,
    then once more per step a consumer takes from its channel to its client (the get,
    the dispatch, the send): each yield lets every ready task run one step."""
    channels = getattr(get_channel_layer(), "channels", {})
    for _ in range(1000):
        if not any(queue.qsize() for queue in channels.values()):
            break
        await asyncio.sleep(0)
    for _ in range(3):
        await asyncio.sleep(0)


async def run_service(service, /, *args: Any, **kwargs: Any) -> Any:
    """Call a service the way a consumer does: on an ORM thread, then send what it
    announced through the channel layer and ask for the queue readings it made due."""
    return await broadcasting.call_service(service, *args, **kwargs)


async def db(function, /, *args: Any, **kwargs: Any) -> Any:
    """Run an ORM read or write from async test code."""
    return await database_sync_to_async(function)(*args, **kwargs)


class Sockets:
    """Opens sockets for one test and closes whatever is still open at the end."""

    def __init__(self) -> None:
        self.open: list[WebsocketCommunicator] = []

    def track(self, communicator: WebsocketCommunicator) -> WebsocketCommunicator:
        self.open.append(communicator)
        return communicator

    async def visitor_connected(self, **headers: Any) -> WebsocketCommunicator:
        """A visitor socket that is accepted at the handshake and has said nothing yet."""
        communicator = self.track(visitor_communicator(**headers))
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        assert connected
        return communicator

    async def visitor(
        self, site_key: str, token: str, *, last_seq: int | None = None, **headers: Any
    ) -> tuple[WebsocketCommunicator, dict]:
        """A visitor socket past `hello`, with its `ready` frame."""
        communicator = await self.visitor_connected(**headers)
        await communicator.send_json_to(hello(site_key, token, last_seq))
        ready = await receive_until(communicator, "ready")
        return communicator, ready

    async def agent(self, agent, **headers: Any) -> tuple[WebsocketCommunicator, dict]:
        """A signed-in agent's dashboard socket, with its `ready` frame."""
        cookie = await session_cookie(agent.user)
        communicator = self.track(agent_communicator(cookie, **headers))
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        assert connected
        ready = await receive_until(communicator, "ready")
        return communicator, ready

    async def close_all(self) -> None:
        for communicator in self.open:
            if communicator.future.done():
                # Disconnected by the test, or cancelled after a receive timed out.
                continue
            await communicator.disconnect(timeout=TIMEOUT)
        self.open.clear()
