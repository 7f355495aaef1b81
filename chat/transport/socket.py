"""What visitor and agent sockets share: limits, decoding, the dispatch to a frame's
handler, error replies, groups, and delivery in seq order.

A frame goes: size check → the socket's rate bucket → decode into its schema
(chat/protocol/inbound.py) → its handler from the socket's table (in line, or in its
conversation's lane: chat/transport/lanes.py) → a service on an ORM thread → the reply.
A refusal of the domain is answered with its `error` frame (chat/protocol/errors.py);
anything else fails the socket (1011).
"""

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from wording import lazy_format

from .. import languages, protocol, selectors
from ..conversations.messages import PostedMessage
from ..protocol import ProtocolError, inbound, outbound
from ..protocol.errors import refusal
from ..realtime import groups, layer, outbox
from ..realtime.delivery import SeqDelivery
from . import lanes, sweeper
from .broadcasting import call_service
from .orm import on_database_thread

logger = logging.getLogger(__name__)

Frame = dict[str, Any]
Handler = Callable[[Any, inbound.Frame], Awaitable[None]]

# Handlers a capability app registers for frames the core declares but does not answer
# itself (`register_handler`), by schema; a schema is one side's, so it names the socket.
_registered: dict[type[inbound.Frame], Handler] = {}


def register_handler(schema: type[inbound.Frame], handler: Handler) -> None:
    """Answer `schema`'s frames with `handler(consumer, frame)`: the seam through which a
    capability app (kb/assist/) answers a frame without the core importing it. Called
    from the app's ready(); registering again replaces."""
    _registered[schema] = handler


# Tasks started from callbacks, referenced until done (asyncio keeps only weak ones).
_background: set[asyncio.Task] = set()


def in_background(coroutine) -> None:
    task = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)


class ChatConsumer(AsyncWebsocketConsumer):
    """The transport of one socket; a subclass gives its table, `handlers` (frame schema →
    handler), and `decode` (a text frame into one of those schemas)."""

    handlers: dict[type[inbound.Frame], Handler] = {}
    # Name of the (burst, frames per second) setting for this kind of socket.
    rate_setting = "SUPPORTDESK_VISITOR_RATE"
    joined: set[str]
    closing = False
    language = settings.LANGUAGE_CODE
    # The unexpected exception a frame's handler raised in its lane, if any.
    failure: BaseException | None = None

    async def __call__(self, scope, receive, send) -> None:
        self.serving = asyncio.current_task()
        self.lanes = lanes.Lanes(self._frame_failed)
        try:
            await self.serve(scope, receive, send)
        except asyncio.CancelledError:
            if self.failure is None:
                raise
            # A frame's handler crashed in its lane: the socket fails as it did when
            # frames were handled in line (daphne logs it and closes with 1011).
            raise self.failure from None
        finally:
            self.lanes.cancel()
            # A consumer that crashed (e.g. the database failed during `hello`) never
            # ran `disconnect`: without this, its groups would stay subscribed here.
            await self.leave_groups()
            await self.forget_channel()

    async def serve(self, scope, receive, send) -> None:
        """Channels' `AsyncConsumer.__call__`, reading the client's messages and the
        channel's events from one queue where the channel layer can deliver into the
        queue `receive` reads (daphne's, and the test communicator's, are an
        `asyncio.Queue` whose `get` is `receive`): one loop reads both, where Channels'
        `await_many_dispatch` starts a task and an `asyncio.wait` for every message
        (docs/performance.md, change 31). Other layers (the core layer, the in-memory
        one) are read Channels' way."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        inbox = getattr(receive, "__self__", None)
        deliver_into = getattr(self.channel_layer, "deliver_into", None)
        try:
            if not isinstance(inbox, asyncio.Queue) or deliver_into is None:
                await await_many_dispatch([receive, self.channel_receive], self.dispatch)
                return
            deliver_into(self.channel_name, inbox)
            # The layer queues an event as its bytes; the client's messages are dicts.
            decode = self.channel_layer.deserialize
            while True:
                message = await receive()
                await self.dispatch(decode(message) if type(message) is bytes else message)
        except StopConsumer:
            pass

    def _frame_failed(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
            self.serving.cancel()

    async def forget_channel(self) -> None:
        """Unsubscribe this socket's own channel (chat/realtime/layer.py)."""
        channel_layer = getattr(self, "channel_layer", None)
        name = getattr(self, "channel_name", None)
        forget = getattr(channel_layer, "forget_channel", None)
        if forget is None or name is None:
            return
        try:
            await forget(name)
        except layer.LAYER_ERRORS as exc:
            # Redis is down; the layer drops the subscription when it reconnects.
            logger.warning("unsubscribing %s failed: %s", name, exc)

    async def dispatch(self, message: dict) -> None:
        # Channels 4.2+ hops into the database thread before every event to close stale
        # connections. Our handlers reach the database only through `on_database_thread`,
        # which already does that, so skip the extra hop: on the hot path it doubles the
        # load on the ORM threads.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_connect(self, message: dict) -> None:
        self.bucket = protocol.TokenBucket(*getattr(settings, self.rate_setting))
        # The language of the texts a person reads in this socket's frames (error.detail).
        self.language = languages.socket_language(self.scope)
        self.joined = set()
        self.delivery = SeqDelivery(self.send_frame, self._read_between, lambda: self.closing)
        sweeper.ensure_running()
        await super().websocket_connect(message)

    @staticmethod
    async def _read_between(conversation: int, after_seq: int, before_seq: int) -> list[Frame]:
        return await on_database_thread(selectors.messages_between)(
            conversation, after_seq, before_seq
        )

    async def join(self, group: str) -> None:
        # Recorded first: if Redis refuses the subscription half-way, leaving still
        # clears what the layer already noted.
        self.joined.add(group)
        await self.channel_layer.group_add(group, self.channel_name)
        layer.watch_subscription(self)

    async def leave_groups(self) -> None:
        layer.unwatch_subscription(self)
        delivery = getattr(self, "delivery", None)
        if delivery is not None:
            delivery.stop()
        # A socket refused at the handshake (agent Origin check) never ran
        # websocket_connect's setup, but the server still reports its disconnect.
        joined, self.joined = getattr(self, "joined", set()), set()
        for group in joined:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except layer.LAYER_ERRORS as exc:
                # Redis is down. The layer forgot the membership; the subscription
                # itself is dropped when the layer reconnects.
                logger.warning("leaving %s on %s failed: %s", group, self.channel_name, exc)

    async def disconnect(self, code: int) -> None:
        # Frames the client sent before it left are still handled, as they were when
        # they were handled in line: a send in flight is stored, published and acked.
        await self.lanes.join()
        await self.leave_groups()

    def events_may_be_lost(self, groups: set[str] | None = None) -> None:
        """This worker lost Redis (or the shard of `groups`; None: every group) for a
        while: broadcasts meant for this socket may be gone. Closing with 4503 makes the
        client reconnect and resume by seq, the path every client already has for a
        dead worker. Groups that only carry state every socket of a kind shares (which
        `refresh_shared` reads afresh) need no reconnect."""
        if groups is not None and groups <= self.shared_groups():
            in_background(self._refresh_shared())
            return
        layer.unwatch_subscription(self)
        in_background(self.close(code=protocol.CLOSE_UNAVAILABLE))

    def shared_groups(self) -> set[str]:
        """The groups this socket joined that carry only shared state, such as whether
        agents are online, never a conversation's events (those resume by seq)."""
        return set()

    async def refresh_shared(self) -> None:
        """Read afresh and send what the `shared_groups` carry."""

    async def _refresh_shared(self) -> None:
        try:
            await self.refresh_shared()
        except Exception as exc:
            # Reconnecting reads everything afresh too: the slower way, always right.
            logger.warning("closing %s: shared state not refreshed: %r", self.channel_name, exc)
            await self.close(code=protocol.CLOSE_UNAVAILABLE)

    async def acknowledge(self, posted: PostedMessage) -> None:
        """Send the sender its ack, in seq order; for a retry, ring the other sockets
        again first."""
        ack = outbound.message_ack(
            client_msg_id=posted.message["client_msg_id"],
            conversation=posted.conversation_id,
            seq=posted.seq,
        )
        if not posted.created:
            # The sender never saw the first ack, so the worker that stored the message
            # may have died before ringing the doorbell (kill -9 between commit and
            # group_send): ring again. Sockets that showed this seq drop it.
            await outbox.ring_again(
                groups.participants(posted.visitor_id, posted.agent_id),
                posted.message,
                skip_channel=self.channel_name,
            )
            if posted.seq in self.delivery.shown_in(posted.conversation_id):
                await self.send_frame(ack)  # the first ack's message was shown
                return
        await self.delivery.deliver(posted.conversation_id, posted.seq, ack)

    async def send_frame(self, frame: Frame) -> None:
        await self.send(text_data=protocol.encode(frame))

    async def call(self, service: Callable, /, **kwargs: Any) -> Any:
        """Run a service on an ORM thread, then send what it announced."""
        return await call_service(service, **kwargs)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self.closing = True
        await super().close(code=code, reason=reason)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            # Frames already in flight when we closed are not acted on or answered.
            return
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > protocol.MAX_FRAME_BYTES:
            logger.info("closing %s: %d-byte frame", self.channel_name, size)
            await self.close(code=protocol.CLOSE_TOO_BIG)
            return
        if not self.bucket.take():
            error = ProtocolError(protocol.RATE_LIMITED, _("Too many frames; slow down."))
            await self.send_frame(error.frame(self.language))
            if self.bucket.refused_in_a_row >= protocol.RATE_LIMIT_CLOSE_AFTER:
                logger.warning("closing %s: flood", self.channel_name)
                await self.close(code=protocol.CLOSE_RATE_LIMITED)
            return
        await self.receive_frame(text_data)

    def decode(self, text_data: str | None) -> inbound.Frame:
        raise NotImplementedError

    async def receive_frame(self, text_data: str | None) -> None:
        try:
            frame = self.decode(text_data)
        except ProtocolError as exc:
            await self.refuse(exc)
            return
        lane = self.lane_of(frame)
        if lane is None:
            await self.handle_frame(frame)
        else:
            self.lanes.submit(lane, functools.partial(self.handle_frame, frame))

    def lane_of(self, frame: inbound.Frame) -> Hashable | None:
        """The lane a frame is handled in, or None to handle it in line: before this
        socket's next frame or event."""
        return None

    async def handle_frame(self, frame: inbound.Frame) -> None:
        if self.closing:
            # Closed (a flood, a rotated token) while this frame waited in its lane.
            return
        handler = self.handlers.get(type(frame)) or _registered.get(type(frame))
        try:
            if handler is None:
                # Declared, but the app that answers it is not installed here.
                raise ProtocolError(
                    protocol.BAD_FRAME,
                    lazy_format(_("%(type)s is not served."), type=inbound.frame_type(frame)),
                )
            await handler(self, frame)
        except ProtocolError as exc:
            await self.refuse(exc)
        except Exception as exc:
            # A refusal about a message names it, for the client to mark it not sent.
            error = refusal(exc, getattr(frame, "client_msg_id", None))
            if error is None:
                raise
            await self.refuse(error)

    async def refuse(self, error: ProtocolError) -> None:
        logger.info("refused frame on %s: %s %s", self.channel_name, error.code, error.detail)
        await self.send_frame(error.frame(self.language))

    # Channel-layer events

    async def chat_frame(self, event: dict) -> None:
        if event.get("skip_channel") == self.channel_name:
            return
        only = event.get("only_channel")
        if only is not None and only != self.channel_name:
            return
        await self.forward(event["frame"])

    async def forward(self, frame: Frame) -> None:
        await self.send_frame(frame)
