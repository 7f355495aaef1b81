"""WebSocket transport: parse, validate, call a service, reply. No ORM, no business rules."""

import asyncio
import contextlib
import contextvars
import functools
import logging
import math
import time
import weakref
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connections,
)

from agents import selectors as agent_selectors
from agents import services as agent_services

from . import (
    lanes,
    origins,
    protocol,
    ratelimits,
    realtime,
    selectors,
    services,
    sweeper,
    transcript_email,
    visitor_context,
)
from .protocol import ProtocolError

logger = logging.getLogger(__name__)

# How often a visitor socket's pings may refresh the visitor's last_seen.
VISITOR_TOUCH_EVERY = 60.0
# A visitor socket that has not said hello by then is closed (4400): an open socket
# that never identifies itself only costs memory.
HELLO_TIMEOUT = 10.0
# Sneak peek: a visitor socket relays a draft (`typing` with `text`) at most this often;
# drafts in between are dropped unanswered, before any database work. The widget sends
# one every 500 ms at most, so only a misbehaving client loses any.
DRAFT_MIN_INTERVAL = 0.25
# What `services.post_message_on_loop` takes of a send's arguments.
_ON_LOOP_ARGUMENTS = (
    "visitor_id",
    "agent_id",
    "conversation_id",
    "client_msg_id",
    "body",
    "origin_channel",
)
# Frames that tell a visitor's tab its chat is open.
_CHAT_OPEN_FRAMES = frozenset(
    {"message", "message.ack", "conversation.queued", "conversation.assigned"}
)
# How long a frame waits for an earlier message of its conversation still on its way
# before that message is read from the database (`ChatConsumer.deliver`).
GAP_WAIT = 0.5


@functools.cache
def _database_threads() -> ThreadPoolExecutor | None:
    threads = settings.SUPPORTDESK_DB_THREADS
    return ThreadPoolExecutor(threads, thread_name_prefix="orm") if threads > 1 else None


@functools.cache
def on_database_thread(fn: Callable) -> Callable:
    """`fn` made awaitable, run on one of the worker's ORM threads (made once per
    function: building asgiref's wrapper was 1 % of a worker's CPU when made per call).

    Channels runs every ORM call of a process on one thread. A message's transaction
    waits on its COMMIT (an fsync on PostgreSQL), and with one thread every other socket
    of the worker waits behind it: past a few hundred messages a second the wait, not
    the CPU, is the limit (docs/performance.md). With SUPPORTDESK_DB_THREADS > 1, calls
    run on that many threads, each with its own connection, and commits overlap. One
    socket's calls still run one at a time (a consumer awaits each), so its order holds;
    calls of different sockets were already concurrent across workers, which the row
    locks in services.py serialise.
    """
    executor = _database_threads()
    if executor is None:
        return _DatabaseCall(fn)
    return _DatabaseCall(fn, thread_sensitive=False, executor=executor)


# How often one connection answers Django's health check (CONN_HEALTH_CHECKS).
HEALTH_CHECK_EVERY = 1.0


class _DatabaseCall(SyncToAsync):
    """Channels' `database_sync_to_async`, with the connection health check at most
    once a second per connection.

    Django marks a connection unchecked after every call (close_old_connections), so
    with CONN_HEALTH_CHECKS each call began with a `SELECT 1` round trip: one statement
    in four on the message path. A connection the server dropped while idle for a
    second or more is still caught before use. One dropped within the last second
    (a PostgreSQL restart) fails its query instead: the error marks it, it is closed
    before the next call, and the client's retry (same client_msg_id) reconnects.
    """

    def thread_handler(self, loop, *args, **kwargs):
        close_old_connections()
        _skip_recent_health_checks()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            close_old_connections()


def _skip_recent_health_checks() -> None:
    now = time.monotonic()
    for connection in connections.all(initialized_only=True):
        if (
            connection.connection is None
            or connection.health_check_done
            or not connection.health_check_enabled
        ):
            continue
        if now - getattr(connection, "supportdesk_checked_at", -HEALTH_CHECK_EVERY) < (
            HEALTH_CHECK_EVERY
        ):
            connection.health_check_done = True
        else:
            connection.supportdesk_checked_at = now


class QueueReadings:
    """The queue readings a worker's sockets asked for (`services.queue_readings_deferred`),
    made on its event loop after the service that asked returned: per site at most one
    running and one waiting, each starting at least `services.QUEUE_READING_WINDOW`
    after the one before, as `services._broadcast_queue` coalesces them, but with no
    ORM thread held while a reading waits for its turn.

    A request made while a reading waits is covered by it: the request comes after the
    change behind it committed, and the reading starts after the request.
    """

    def __init__(self) -> None:
        self.wanted: dict[int, set[int] | None] = {}
        self.tasks: dict[int, asyncio.Task] = {}  # site -> its reader
        self.last: dict[int, float] = {}  # site -> when its latest reading began

    def request(self, readings: dict[int, set[int] | None]) -> None:
        loop = asyncio.get_running_loop()
        for site_id, starts in readings.items():
            services.want_queue_reading(self.wanted, site_id, starts)
            if site_id not in self.tasks:
                # A context of its own: not the requesting socket's outbox.
                self.tasks[site_id] = loop.create_task(
                    self._read(site_id), context=contextvars.Context()
                )

    async def _read(self, site_id: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            while site_id in self.wanted:
                wait = self.last.get(site_id, -math.inf) + services.QUEUE_READING_WINDOW
                if wait > loop.time():
                    await asyncio.sleep(wait - loop.time())
                starts = self.wanted.pop(site_id)
                self.last[site_id] = loop.time()
                try:
                    async with broadcasting():
                        await on_database_thread(services.read_queue)(site_id, starts)
                except OUTAGE_ERRORS:
                    # The positions stay as last told until the next change's reading.
                    logger.warning("reading the queue of site %s failed", site_id)
                except Exception:
                    # Not the socket's to answer (its service returned): logged, and
                    # the next request for this site reads again.
                    logger.exception("reading the queue of site %s failed", site_id)
        finally:
            del self.tasks[site_id]

    async def settled(self) -> None:
        """Wait for every reading asked for so far (tests)."""
        while self.tasks:
            await asyncio.gather(*self.tasks.values())


_queue_readings: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def queue_readings() -> QueueReadings:
    """This event loop's `QueueReadings`."""
    loop = asyncio.get_running_loop()
    readings = _queue_readings.get(loop)
    if readings is None:
        readings = _queue_readings[loop] = QueueReadings()
    return readings


@contextlib.asynccontextmanager
async def broadcasting():
    """Around services run from a socket: what they broadcast is collected and sent when
    it ends (after an error too), and the queue readings they ask for are requested
    from this loop's `QueueReadings`."""
    with realtime.Outbox() as events, services.queue_readings_deferred() as readings:
        try:
            yield
        finally:
            await realtime.flush(events)
            if readings:
                queue_readings().request(readings)


def _service_error(exc: Exception, client_msg_id: str | None) -> ProtocolError | None:
    """Map a service's refusal to the contract's error frame."""
    if isinstance(exc, services.AttachmentNotFound):
        return ProtocolError(protocol.NOT_FOUND, "No such attachment.", client_msg_id=client_msg_id)
    if isinstance(exc, selectors.NotFound):
        return ProtocolError(
            protocol.NOT_FOUND, "No such conversation.", client_msg_id=client_msg_id
        )
    if isinstance(exc, services.ConversationClosed):
        return ProtocolError(
            protocol.CONVERSATION_CLOSED, "The conversation is closed.", client_msg_id=client_msg_id
        )
    if isinstance(exc, services.AlreadyRated):
        return ProtocolError(protocol.ALREADY_RATED, "This conversation was already rated.")
    if isinstance(exc, services.AgentUnavailable):
        return ProtocolError(
            protocol.AGENT_UNAVAILABLE, "That agent cannot take this chat right now."
        )
    if isinstance(exc, agent_selectors.CannedResponseRefused):
        return ProtocolError(exc.code, exc.detail)
    if isinstance(exc, services.SeqOutOfRange):
        return ProtocolError(protocol.BAD_FRAME, "seq is past the conversation's last message.")
    if isinstance(exc, services.ClientMsgIdTaken):
        return ProtocolError(
            protocol.BAD_FRAME,
            "client_msg_id is already used in this conversation.",
            client_msg_id=client_msg_id,
        )
    if isinstance(exc, (DatabaseError, InterfaceError)):
        logger.error("database unavailable: %s", exc)
        return ProtocolError(
            protocol.UNAVAILABLE,
            "The server cannot store this right now; retry with the same client_msg_id.",
            client_msg_id=client_msg_id,
        )
    return None


class ShownSeqs:
    """The seqs of one conversation a socket has shown its client (through `ready`,
    history, `sync`, an ack or a `message` frame), so that a message rung twice (a retry
    rings again, see `ChatConsumer.acknowledge`) reaches the client once."""

    # Seqs above a gap that never fills (a broadcast lost for good) are kept up to
    # this many; past it the oldest are forgotten, and a very late duplicate of one
    # of them would be shown again.
    MAX_ABOVE = 1000

    def __init__(self, through: int = 0) -> None:
        self.through = through  # every seq up to this one was shown
        self.above: set[int] = set()

    def add(self, seq: int) -> bool:
        """Record `seq` as shown; False if it already was."""
        if seq <= self.through or seq in self.above:
            return False
        self.above.add(seq)
        self._compact()
        return True

    def cover(self, through: int) -> None:
        """Record every seq up to `through` as shown."""
        if through > self.through:
            self.through = through
            self.above = {seq for seq in self.above if seq > through}
            self._compact()

    def _compact(self) -> None:
        while self.through + 1 in self.above:
            self.through += 1
            self.above.remove(self.through)
        if len(self.above) > self.MAX_ABOVE:
            self.cover(sorted(self.above)[len(self.above) // 2])


# Tasks started from callbacks, referenced until done (asyncio keeps only weak ones).
_background: set[asyncio.Task] = set()


class ChatConsumer(AsyncWebsocketConsumer):
    """What visitor and agent sockets share: limits, error replies, service calls."""

    frame_types: frozenset[str] = frozenset()
    # Name of the (burst, frames per second) setting for this kind of socket.
    rate_setting = "SUPPORTDESK_VISITOR_RATE"
    joined: set[str]
    shown: dict[int, ShownSeqs]
    closing = False
    # The unexpected exception a frame's handler raised in its lane, if any.
    failure: BaseException | None = None

    async def __call__(self, scope, receive, send) -> None:
        self.serving = asyncio.current_task()
        self.lanes = lanes.Lanes(self._frame_failed)
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            if self.failure is None:
                raise
            # A frame's handler crashed in its lane: the socket fails as it did when
            # frames were handled here (daphne logs it and closes with 1011).
            raise self.failure from None
        finally:
            self.lanes.cancel()
            # A consumer that crashed (e.g. the database failed during `hello`) never
            # ran `disconnect`: without this, its groups would stay subscribed here.
            await self.leave_groups()
            await self.forget_channel()

    def _frame_failed(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
            self.serving.cancel()

    async def forget_channel(self) -> None:
        """Unsubscribe this socket's own channel (see chat/channel_layer.py)."""
        layer, name = getattr(self, "channel_layer", None), getattr(self, "channel_name", None)
        forget = getattr(layer, "forget_channel", None) if layer is not None else None
        if forget is None or name is None:
            return
        try:
            await forget(name)
        except realtime.LAYER_ERRORS as exc:
            # Redis is down; the layer drops the subscription when it reconnects.
            logger.warning("unsubscribing %s failed: %s", name, exc)

    async def dispatch(self, message: dict) -> None:
        # Channels 4.2+ hops into the database thread before every event to close
        # stale connections. Our handlers reach the database only through
        # database_sync_to_async, which already does that, so skip the extra hop:
        # on the hot path it doubles the load on the single ORM thread.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_connect(self, message: dict) -> None:
        self.bucket = protocol.TokenBucket(*getattr(settings, self.rate_setting))
        self.joined = set()
        self.shown = {}
        # Frames waiting for an earlier seq, and the timers that stop the wait (`deliver`).
        self.held: dict[int, dict[int, dict[str, Any]]] = {}
        self.gap_timers: dict[int, asyncio.TimerHandle] = {}
        self.delivering = asyncio.Lock()
        sweeper.ensure_running()
        await super().websocket_connect(message)

    async def join(self, group: str) -> None:
        # Recorded first: if Redis refuses the subscription half-way, leaving still
        # clears what the layer already noted.
        self.joined.add(group)
        await self.channel_layer.group_add(group, self.channel_name)
        realtime.watch_subscription(self)

    async def leave_groups(self) -> None:
        realtime.unwatch_subscription(self)
        for timer in getattr(self, "gap_timers", {}).values():
            timer.cancel()
        # A socket refused at the handshake (agent Origin check) never ran
        # websocket_connect's setup, but the server still reports its disconnect.
        joined, self.joined = getattr(self, "joined", set()), set()
        for group in joined:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except realtime.LAYER_ERRORS as exc:
                # Redis is down. The layer forgot the membership; the subscription
                # itself is dropped when the layer reconnects (chat/channel_layer.py).
                logger.warning("leaving %s on %s failed: %s", group, self.channel_name, exc)

    async def disconnect(self, code: int) -> None:
        # Frames the client sent before it left are still handled, as they were when
        # they were handled in line: a send in flight is stored, published and acked.
        await self.lanes.join()
        await self.leave_groups()

    def events_may_be_lost(self) -> None:
        """This worker lost Redis for a while: broadcasts meant for this socket may be
        gone. Closing with 4503 makes the client reconnect and resume by seq, the path
        every client already has for a dead worker."""
        realtime.unwatch_subscription(self)
        task = asyncio.ensure_future(self.close(code=protocol.CLOSE_UNAVAILABLE))
        _background.add(task)
        task.add_done_callback(_background.discard)

    def shown_in(self, conversation_id: int) -> ShownSeqs:
        shown = self.shown.get(conversation_id)
        if shown is None:
            shown = self.shown[conversation_id] = ShownSeqs()
        return shown

    async def acknowledge(self, posted: services.PostedMessage) -> None:
        """Send the sender its ack, in seq order; for a retry, ring the other sockets
        again first."""
        conversation, seq = posted.message["conversation"], posted.message["seq"]
        if not posted.created:
            # The sender never saw the first ack, so the worker that stored the message
            # may have died before ringing the doorbell (kill -9 between commit and
            # group_send): ring again. Sockets that showed this seq drop it (ShownSeqs).
            await realtime.ring_again(
                posted.recipients, posted.message, skip_channel=self.channel_name
            )
            shown = self.shown_in(conversation)
            if seq <= shown.through or seq in shown.above:
                await self.send_frame(posted.ack())  # the first ack's message was shown
                return
        await self.deliver(conversation, seq, posted.ack())

    async def forward_message(self, frame: dict[str, Any]) -> None:
        """Forward a `message` frame so that this socket shows each conversation's
        messages once and in seq order. Redis orders nothing between publishers (the
        visitor's worker and the agent's), so a message can overtake an earlier one
        still on its way: it waits for it (`deliver`). A seq already shown is dropped:
        a retry rings again (`acknowledge`)."""
        conversation, seq = frame["conversation"], frame["seq"]
        if conversation not in self.shown:
            # First news of this conversation on this socket (its `conversation.assigned`
            # may still be on its way from another worker): nothing to wait for.
            self.shown[conversation] = ShownSeqs(through=seq - 1)
        await self.deliver(conversation, seq, frame)

    async def deliver(self, conversation: int, seq: int, frame: dict[str, Any]) -> None:
        """Send `frame` (the `message` or `message.ack` of `seq`) once every earlier seq
        of the conversation was shown; until then it waits in `held`.

        Usually the earlier message is a broadcast a few milliseconds behind (the other
        side's message, published by another worker). One lost for good (a worker
        killed between commit and group_send, a Redis blip) is read from the database
        after GAP_WAIT (`fill_gap`): waiting first spares a query for every message
        that merely arrived out of order, which under load was most of them
        (docs/performance.md, change 7)."""
        async with self.delivering:
            shown = self.shown_in(conversation)
            if seq <= shown.through or seq in shown.above:
                return
            if seq > shown.through + 1:
                self.held.setdefault(conversation, {})[seq] = frame
                if conversation not in self.gap_timers:
                    self.gap_timers[conversation] = asyncio.get_running_loop().call_later(
                        GAP_WAIT, self._gap_wait_over, conversation
                    )
                return
            shown.add(seq)
            await self.send_frame(frame)
            await self._release_held(conversation)

    async def _release_held(self, conversation: int) -> None:
        """Send the held frames that no longer wait for anything (under `delivering`)."""
        held = self.held.get(conversation)
        shown = self.shown[conversation]
        while held:
            seq = min(held)
            if seq > shown.through + 1:
                return
            frame = held.pop(seq)
            if shown.add(seq):
                await self.send_frame(frame)
        self.held.pop(conversation, None)
        timer = self.gap_timers.pop(conversation, None)
        if timer is not None:
            timer.cancel()

    def _gap_wait_over(self, conversation: int) -> None:
        self.gap_timers.pop(conversation, None)
        if self.held.get(conversation) and not self.closing:
            task = asyncio.ensure_future(self.fill_gap(conversation))
            _background.add(task)
            task.add_done_callback(_background.discard)

    async def fill_gap(self, conversation: int) -> None:
        """Read the messages still missing below the held frames from the database, then
        send everything held in seq order. If the database cannot answer, the held
        frames go out anyway: the client fills gaps itself (`ready.last_seq`, `sync`)."""
        shown, held = self.shown[conversation], self.held.get(conversation, {})
        top = max(held, default=0)
        missing: list[dict] = []
        if top > shown.through + 1:
            try:
                missing = await on_database_thread(selectors.messages_between)(
                    conversation, shown.through, top
                )
            except (DatabaseError, InterfaceError) as exc:
                logger.warning("no gap fill on %s: %s", self.channel_name, exc)
        async with self.delivering:
            if self.closing:
                return
            held = self.held.pop(conversation, {})
            for message in missing:
                held.setdefault(message["seq"], {"type": "message", **message})
            for seq in sorted(held):
                if shown.add(seq):
                    await self.send_frame(held[seq])
            timer = self.gap_timers.pop(conversation, None)
            if timer is not None:
                timer.cancel()

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=protocol.encode(frame))

    # Whether a message sent now likely goes into an open conversation, so the everyday
    # send is worth trying (`post_message`); a wrong guess only costs time.
    chat_open = True

    async def call(self, service: Callable, /, **kwargs: Any) -> Any:
        """Run a service on the database thread, then send what it broadcast and ask for
        the queue readings it wanted (`broadcasting`)."""
        async with broadcasting():
            return await on_database_thread(service)(**kwargs)

    async def post_message(self, service: Callable, /, **kwargs: Any) -> services.PostedMessage:
        """Store a message with `service` (`post_visitor_message` or `post_agent_message`).
        The everyday send first tries its one statement on the event loop
        (`services.post_message_on_loop`), skipping the hop to an ORM thread; a message
        this socket expects to open a chat (`chat_open`) goes the full path at once."""
        if not self.chat_open:
            kwargs["try_at_once"] = False  # a first message: it needs the full path
        elif kwargs["attachment_id"] is None and services.sends_on_loop():
            async with broadcasting():
                posted = await services.post_message_on_loop(
                    **{key: kwargs[key] for key in _ON_LOOP_ARGUMENTS if key in kwargs}
                )
            if posted is not None:
                return posted
            kwargs["try_at_once"] = False  # just tried: it needs the full path
        return await self.call(service, **kwargs)

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
            await self.send_frame(
                ProtocolError(protocol.RATE_LIMITED, "Too many frames; slow down.").frame()
            )
            if self.bucket.refused_in_a_row >= protocol.RATE_LIMIT_CLOSE_AFTER:
                logger.warning("closing %s: flood", self.channel_name)
                await self.close(code=protocol.CLOSE_RATE_LIMITED)
            return
        await self.receive_frame(text_data)

    async def receive_frame(self, text_data: str | None) -> None:
        try:
            frame = protocol.parse_frame(text_data, self.frame_types)
        except ProtocolError as exc:
            logger.info("refused frame on %s: %s %s", self.channel_name, exc.code, exc.detail)
            await self.send_frame(exc.frame())
            return
        lane = self.lane_of(frame)
        if lane is None:
            await self.handle_frame(frame)
        else:
            self.lanes.submit(lane, functools.partial(self.handle_frame, frame))

    def lane_of(self, frame: dict[str, Any]) -> Hashable | None:
        """The lane a frame is handled in (chat/lanes.py), or None to handle it in line:
        before this socket's next frame or event."""
        return None

    async def handle_frame(self, frame: dict[str, Any]) -> None:
        if self.closing:
            # Closed (a flood, a rotated token) while this frame waited in its lane.
            return
        client_msg_id = None
        try:
            if frame["type"] in ("message.send", "note.send"):
                client_msg_id = (
                    frame.get("client_msg_id")
                    if isinstance(frame.get("client_msg_id"), str)
                    else None
                )
            await self.handle(frame)
        except ProtocolError as exc:
            logger.info("refused frame on %s: %s %s", self.channel_name, exc.code, exc.detail)
            await self.send_frame(exc.frame())
        except Exception as exc:
            error = _service_error(exc, client_msg_id)
            if error is None:
                raise
            logger.info("refused frame on %s: %s", self.channel_name, error.code)
            await self.send_frame(error.frame())

    async def handle(self, frame: dict[str, Any]) -> None:
        raise NotImplementedError

    # Channel-layer events

    async def chat_frame(self, event: dict) -> None:
        if event.get("skip_channel") == self.channel_name:
            return
        await self.forward(event["frame"])

    async def forward(self, frame: dict[str, Any]) -> None:
        await self.send_frame(frame)


class VisitorConsumer(ChatConsumer):
    """`/ws/visitor/`: one browser tab of one visitor."""

    frame_types = protocol.VISITOR_FRAME_TYPES
    visitor_id: int | None = None
    last_touch = 0.0
    # The site's sneak-peek setting as of `hello`: this socket's drafts are relayed
    # only if it was on, and its `ready` told the widget so (which discloses it).
    sneak_peek = False
    last_draft = float("-inf")
    # What this socket last told its client about agents being online.
    agents_online: bool | None = None
    hello_deadline: asyncio.TimerHandle | None = None

    async def connect(self) -> None:
        # The Origin check needs the site, so it happens at `hello` (close 4403).
        await self.accept()
        self.hello_deadline = asyncio.get_running_loop().call_later(
            HELLO_TIMEOUT, lambda: asyncio.ensure_future(self._hello_timed_out())
        )

    async def _hello_timed_out(self) -> None:
        if self.visitor_id is None:
            logger.info("closing %s: no hello within %s s", self.channel_name, HELLO_TIMEOUT)
            await self.close(code=protocol.CLOSE_NOT_HELLO)

    async def disconnect(self, code: int) -> None:
        if self.hello_deadline is not None:
            self.hello_deadline.cancel()
        await super().disconnect(code)

    async def receive_frame(self, text_data: str | None) -> None:
        if self.visitor_id is None:
            await self.hello(text_data)
        else:
            await super().receive_frame(text_data)

    async def hello(self, text_data: str | None) -> None:
        try:
            frame = protocol.parse_frame(text_data, self.frame_types)
            if frame["type"] != "hello":
                raise ProtocolError(protocol.BAD_FRAME, "The first frame must be hello.")
            site_key = protocol.string(frame, "site_key", max_length=64)
            token = protocol.string(frame, "visitor_token", max_length=128)
            last_seq = protocol.non_negative_int(frame, "last_seq", default=0)
        except ProtocolError as exc:
            logger.info("visitor hello refused: %s", exc.detail)
            await self.close(code=protocol.CLOSE_NOT_HELLO)
            return
        try:
            # (addition) Context for the agent: advisory, so a malformed one is ignored
            # rather than a reason to refuse the hello.
            page, timezone_name = protocol.page_report(frame)
        except ProtocolError as exc:
            logger.info("visitor hello: context ignored: %s", exc.detail)
            page = timezone_name = None
        try:
            site, visitor = await on_database_thread(self._identify)(site_key, token)
        except selectors.SiteDisabled:
            await self.close(code=protocol.CLOSE_FORBIDDEN)
            return
        except selectors.NotFound:
            logger.info("visitor hello refused: unknown site key or token")
            await self.close(code=protocol.CLOSE_UNAUTHORIZED)
            return
        origin = origins.header(self.scope, b"origin")
        if not origins.visitor_origin_allowed(
            origin, origins.header(self.scope, b"host"), site.allowed_origins
        ):
            logger.warning("visitor socket refused for origin %r on site %s", origin, site.id)
            await self.close(code=protocol.CLOSE_FORBIDDEN)
            return
        self.visitor_id = visitor.id
        self.limits = ratelimits.VisitorLimits(
            visitor_id=visitor.id, client=ratelimits.scope_client(self.scope)
        )
        # Join before reading the state for `ready`, so nothing committed in between is missed.
        await self.join(realtime.visitor_group(visitor.id))
        await self.join(realtime.site_visitors_group(site.id))
        self.sneak_peek = site.sneak_peek
        self.site_origins = site.allowed_origins
        # The browser's User-Agent comes from the handshake, the page from the widget;
        # nothing is written (and no query made) when neither changed since last time.
        await self.call(
            services.report_visitor_context,
            visitor_id=visitor.id,
            allowed_origins=self.site_origins,
            page=page,
            timezone_name=timezone_name,
            user_agent=origins.header(self.scope, b"user-agent") or "",
            known=visitor,
        )
        ready = await on_database_thread(selectors.visitor_ready)(visitor, last_seq)
        # (addition) Whether this socket relays drafts: the widget's privacy line says so.
        ready["sneak_peek"] = self.sneak_peek
        self.agents_online = ready.get("agents_online")
        chat = ready["conversation"]
        self.chat_open = chat is not None and chat["status"] != "closed"
        if ready["conversation"] is not None:
            # Race: a message can commit between reading the conversation row and
            # reading its messages, so `messages` may reach past `last_seq`; whatever
            # `ready` carried must not come again as a `message` frame.
            through = max(
                [ready["conversation"]["last_seq"], *(m["seq"] for m in ready["messages"])]
            )
            self.shown_in(ready["conversation"]["id"]).cover(through)
        await self.send_frame(ready)

    @staticmethod
    def _identify(site_key: str, token: str):
        site = selectors.enabled_site(site_key)
        visitor = selectors.visitor_for_token(site, token)
        services.touch_visitor(visitor_id=visitor.id)
        return site, visitor

    async def handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "message.send":
            msg_id = protocol.client_msg_id(frame)
            attachment = protocol.attachment_id(frame, msg_id)
            body = protocol.message_body(frame, msg_id, may_be_empty=attachment is not None)
            try:
                await self.limits.message()
                posted = await self.post_message(
                    services.post_visitor_message,
                    visitor_id=self.visitor_id,
                    client_msg_id=msg_id,
                    body=body,
                    origin_channel=self.channel_name,
                    before_opening=self.limits.new_conversation,
                    attachment_id=attachment,
                )
            except ratelimits.RateLimited:
                await self.refuse_over_limit(msg_id)
                return
            self.limits.accepted()
            await self.acknowledge(posted)
        elif kind == "typing":
            active = protocol.boolean(frame, "active")
            # The client's draft is dropped unless the site allows sneak peek: the
            # setting, not the widget, decides.
            text = protocol.typing_draft(frame) if self.sneak_peek and active else None
            if text is not None:
                now = asyncio.get_running_loop().time()
                if now - self.last_draft < DRAFT_MIN_INTERVAL:
                    return
                self.last_draft = now
            await self.call(
                services.visitor_typing, visitor_id=self.visitor_id, active=active, text=text
            )
        elif kind == "read":
            seq = protocol.non_negative_int(frame, "seq")
            await self.call(
                services.visitor_read,
                visitor_id=self.visitor_id,
                seq=seq,
                origin_channel=self.channel_name,
            )
        elif kind == "conversation.close":
            await self.call(services.close_by_visitor, visitor_id=self.visitor_id)
        elif kind == "rating":
            score = protocol.rating_score(frame)
            comment = protocol.rating_comment(frame)
            await self.call(
                services.rate_conversation,
                visitor_id=self.visitor_id,
                score=score,
                comment=comment,
            )
        elif kind == "ping":
            await self.send_frame({"type": "pong"})
            now = asyncio.get_running_loop().time()
            if now - self.last_touch > VISITOR_TOUCH_EVERY:
                self.last_touch = now
                await self.call(services.touch_visitor, visitor_id=self.visitor_id)
        elif kind == "page.view":
            page, timezone_name = protocol.page_report(frame)
            await self.call(
                services.report_visitor_context,
                visitor_id=self.visitor_id,
                allowed_origins=self.site_origins,
                page=page,
                timezone_name=timezone_name,
            )
        elif kind == "transcript.email":
            email = protocol.email_address(frame)
            try:
                transcript = await self.call(
                    services.prepare_transcript_email,
                    visitor_id=self.visitor_id,
                    email=email,
                    before_sending=self.limits.transcript_email,
                )
            except ratelimits.RateLimited:
                await self.send_frame(
                    ProtocolError(
                        protocol.RATE_LIMITED, "Too many transcripts asked for; try again later."
                    ).frame()
                )
                return
            task = asyncio.ensure_future(self.mail_transcript(transcript))
            _background.add(task)
            task.add_done_callback(_background.discard)
        elif kind == "hello":
            raise ProtocolError(protocol.BAD_FRAME, "hello was already received.")

    async def mail_transcript(self, transcript: transcript_email.TranscriptEmail) -> None:
        """Send a prepared transcript, then tell this socket how it went. A mail server
        may take seconds: the mail goes out on a thread of its own, so neither the event
        loop nor a database thread waits for it, and this socket's other frames are
        served meanwhile (the request itself was answered by nothing yet)."""
        sent = await asyncio.to_thread(transcript_email.send, transcript)
        if sent:
            frame = {
                "type": "transcript.sent",
                "conversation": transcript.conversation_id,
                "email": transcript.to,
            }
        else:
            frame = ProtocolError(
                protocol.UNAVAILABLE, "The transcript could not be mailed; try again later."
            ).frame()
        if self.closing:
            return
        try:
            await self.send_frame(frame)
        except Exception as exc:  # the socket went away while the mail was out
            logger.info("transcript result not delivered on %s: %r", self.channel_name, exc)

    async def refuse_over_limit(self, client_msg_id: str) -> None:
        """A send over a shared limit (chat/ratelimits.py) stored nothing: `rate_limited`,
        and a flood of them closes the socket like a flood past the bucket (4008)."""
        await self.send_frame(
            ProtocolError(
                protocol.RATE_LIMITED, "Too many messages; slow down.", client_msg_id=client_msg_id
            ).frame()
        )
        if self.limits.refused_in_a_row >= protocol.RATE_LIMIT_CLOSE_AFTER:
            logger.warning("closing %s: flood over the shared limits", self.channel_name)
            await self.close(code=protocol.CLOSE_RATE_LIMITED)

    async def chat_token_rotated(self, event: dict) -> None:
        # The token this socket said hello with was replaced: it no longer identifies
        # anyone, so neither does this socket (a leaked token's reader is cut off).
        logger.info("closing visitor %s socket: token rotated", self.visitor_id)
        await self.close(code=protocol.CLOSE_UNAUTHORIZED)

    async def send_frame(self, frame: dict[str, Any]) -> None:
        # What this tab has been told says whether the visitor has a chat open (another
        # tab may open or close it): a first message skips the everyday send.
        kind = frame["type"]
        if kind in _CHAT_OPEN_FRAMES:
            self.chat_open = True
        elif kind == "conversation.closed":
            self.chat_open = False
        await super().send_frame(frame)

    async def forward(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "message":
            await self.forward_message(frame)
        elif frame["type"] == "agents.online":
            # Several workers may announce the same change: show the client changes only.
            if frame["online"] != self.agents_online:
                self.agents_online = frame["online"]
                await self.send_frame(frame)
        else:
            await self.send_frame(frame)


class AgentConsumer(ChatConsumer):
    """`/ws/agent/`: one dashboard tab of one signed-in agent."""

    frame_types = protocol.AGENT_FRAME_TYPES
    rate_setting = "SUPPORTDESK_AGENT_RATE"
    agent_id: int | None = None
    heartbeat_task: asyncio.Task | None = None

    async def websocket_connect(self, message: dict) -> None:
        # Agent sockets carry the session cookie: only the app's own pages may open
        # them (cross-site WebSocket hijacking), so a foreign Origin is refused at
        # the handshake.
        origin = origins.header(self.scope, b"origin")
        if not origins.is_own_origin(origin or "", origins.header(self.scope, b"host")):
            logger.warning("agent socket refused for origin %r", origin)
            await self.close()
            return
        await super().websocket_connect(message)

    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        agent = None
        if user is not None and user.is_authenticated and user.is_active:
            agent = await on_database_thread(self._profile)(user.pk)
        if agent is None:
            await self.close(code=protocol.CLOSE_UNAUTHORIZED)
            return
        self.agent_id = agent.id
        visitor_context.warm_up()  # ua-parser's rules, off the database thread, once
        await self.join(realtime.agent_group(agent.id))
        await self.join(realtime.AGENTS_GROUP)
        ready, self.site_ids, self.queue_lengths = await self.call(self._ready, agent_id=agent.id)
        self.queue_versions: dict[int, int] = {}
        self.queue_length = ready["queue_length"]
        for conversation in ready["conversations"]:
            # The dashboard `sync`s up to each `last_seq`; frames continue after it.
            self.shown_in(conversation["id"]).cover(conversation["last_seq"])
        await self.send_frame(ready)
        self.heartbeat_task = asyncio.create_task(self._heartbeat_loop())

    @staticmethod
    def _profile(user_id: int):
        from agents.models import AgentProfile

        return AgentProfile.objects.filter(user_id=user_id).first()

    @staticmethod
    def _ready(*, agent_id: int):
        # Connecting counts as a heartbeat, and may free this agent to take the queue.
        services.heartbeat(agent_id=agent_id, route=True)
        from agents.models import AgentProfile

        agent = AgentProfile.objects.get(pk=agent_id)
        return (
            selectors.agent_ready(agent),
            selectors.agent_site_ids(agent_id),
            selectors.queue_lengths(),
        )

    async def _heartbeat_loop(self) -> None:
        interval = settings.SUPPORTDESK_HEARTBEAT_INTERVAL
        while True:
            await asyncio.sleep(interval)
            try:
                alive = await self.call(services.heartbeat, agent_id=self.agent_id)
            except (DatabaseError, InterfaceError) as exc:
                logger.error("heartbeat failed: %s", exc)
                continue
            if not alive:
                logger.info("closing agent %s socket: login deactivated", self.agent_id)
                await self.close(code=protocol.CLOSE_UNAUTHORIZED)
                return

    async def disconnect(self, code: int) -> None:
        if self.heartbeat_task is not None:
            self.heartbeat_task.cancel()
        await super().disconnect(code)

    async def chat_agent_gone(self, event: dict) -> None:
        # The login was deactivated (services.disconnect_agent): close now rather than
        # at the next heartbeat.
        logger.info("closing agent %s socket: login deactivated", self.agent_id)
        await self.close(code=protocol.CLOSE_UNAUTHORIZED)

    async def receive_frame(self, text_data: str | None) -> None:
        if self.agent_id is None:
            return
        await super().receive_frame(text_data)

    def lane_of(self, frame: dict[str, Any]) -> Hashable | None:
        # One lane per conversation: an agent's frames about one chat keep their order
        # (its messages' seqs, a close after the sends before it), while a send waiting
        # on the database holds up neither the agent's other chats nor its events. The
        # rest (presence, ping, canned responses) is rare and handled in line. A
        # visitor's socket has one chat and handles everything in line: its frames
        # come seconds apart, and its client sees replies before what they caused.
        conversation = frame.get("conversation")
        return conversation if type(conversation) is int else None

    async def handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "message.send":
            msg_id = protocol.client_msg_id(frame)
            conversation = protocol.conversation_id(frame)
            attachment = protocol.attachment_id(frame, msg_id)
            body = protocol.message_body(frame, msg_id, may_be_empty=attachment is not None)
            posted = await self.post_message(
                services.post_agent_message,
                agent_id=self.agent_id,
                conversation_id=conversation,
                client_msg_id=msg_id,
                body=body,
                origin_channel=self.channel_name,
                attachment_id=attachment,
            )
            await self.acknowledge(posted)
        elif kind == "note.send":
            msg_id = protocol.client_msg_id(frame)
            conversation = protocol.conversation_id(frame)
            body = protocol.message_body(frame, msg_id)
            posted_note = await self.call(
                services.post_note,
                agent_id=self.agent_id,
                conversation_id=conversation,
                client_msg_id=msg_id,
                body=body,
            )
            await self.send_frame(posted_note.ack())
            if not posted_note.created:
                # A retry: this tab may have missed the first `note` frame.
                await self.send_frame({"type": "note", **posted_note.note})
        elif kind == "typing":
            conversation = protocol.conversation_id(frame)
            active = protocol.boolean(frame, "active")
            await self.call(
                services.agent_typing,
                agent_id=self.agent_id,
                conversation_id=conversation,
                active=active,
            )
        elif kind == "read":
            conversation = protocol.conversation_id(frame)
            seq = protocol.non_negative_int(frame, "seq")
            await self.call(
                services.agent_read,
                agent_id=self.agent_id,
                conversation_id=conversation,
                seq=seq,
                origin_channel=self.channel_name,
            )
        elif kind == "sync":
            conversation = protocol.conversation_id(frame)
            after_seq = protocol.non_negative_int(frame, "after_seq", default=0)
            reply = await self.call(
                self._sync_reply,
                agent_id=self.agent_id,
                conversation_id=conversation,
                after_seq=after_seq,
            )
            shown = self.shown_in(conversation)
            for message in reply["messages"]:
                shown.add(message["seq"])
            await self.send_frame(reply)
        elif kind == "presence":
            status = protocol.presence_status(frame)
            await self.call(
                services.set_presence,
                agent_id=self.agent_id,
                status=status,
                origin_channel=self.channel_name,
            )
            await self.send_frame({"type": "presence", "status": status})
        elif kind == "conversation.close":
            conversation = protocol.conversation_id(frame)
            await self.call(
                services.close_by_agent, agent_id=self.agent_id, conversation_id=conversation
            )
        elif kind == "conversation.transfer":
            conversation = protocol.conversation_id(frame)
            to_agent = protocol.optional_agent_id(frame, "to_agent")
            await self.call(
                services.transfer_conversation,
                agent_id=self.agent_id,
                conversation_id=conversation,
                to_agent_id=to_agent,
            )
        elif kind == "visitor.profile":
            conversation = protocol.conversation_id(frame)
            profile = await on_database_thread(selectors.visitor_profile)(
                self.agent_id, conversation
            )
            await self.send_frame(profile)
        elif kind == "conversation.history":
            conversation = protocol.conversation_id(frame)
            history = await on_database_thread(selectors.conversation_history)(
                self.agent_id, conversation
            )
            await self.send_frame(history)
        elif kind == "agents.list":
            agents = await on_database_thread(selectors.colleagues)(self.agent_id)
            await self.send_frame({"type": "agents", "agents": agents})
        elif kind == "canned.list":
            await self.send_frame(
                await on_database_thread(agent_selectors.canned_frame)(self.agent_id)
            )
        elif kind == "canned.create":
            shortcut, body = protocol.text(frame, "shortcut"), protocol.text(frame, "body")
            shared = protocol.boolean(frame, "shared") if "shared" in frame else False
            saved = await self.call(
                agent_services.create_canned_response,
                agent_id=self.agent_id,
                shortcut=shortcut,
                body=body,
                shared=shared,
            )
            await self.send_frame({"type": "canned.saved", "response": saved})
        elif kind == "canned.update":
            response_id = protocol.canned_response_id(frame)
            shortcut, body = protocol.text(frame, "shortcut"), protocol.text(frame, "body")
            saved = await self.call(
                agent_services.update_canned_response,
                agent_id=self.agent_id,
                response_id=response_id,
                shortcut=shortcut,
                body=body,
            )
            await self.send_frame({"type": "canned.saved", "response": saved})
        elif kind == "canned.delete":
            response_id = protocol.canned_response_id(frame)
            await self.call(
                agent_services.delete_canned_response,
                agent_id=self.agent_id,
                response_id=response_id,
            )
            await self.send_frame({"type": "canned.deleted", "id": response_id})
        elif kind == "ping":
            idle = protocol.idle_seconds(frame)
            await self.send_frame({"type": "pong"})
            await self.call(services.heartbeat, agent_id=self.agent_id)
            if idle is not None:
                # (addition) The dashboard's idle time: the server decides auto-away.
                await self.call(services.report_activity, agent_id=self.agent_id, idle_seconds=idle)

    @staticmethod
    def _sync_reply(*, agent_id: int, conversation_id: int, after_seq: int) -> dict:
        conversation = selectors.conversation_for_agent(agent_id, conversation_id, read_only=True)
        return {
            "type": "sync",
            "conversation": conversation.id,
            "after_seq": after_seq,
            "last_seq": conversation.last_seq,
            "messages": selectors.messages_after(conversation.id, after_seq),
            "notes": selectors.notes_of(conversation.id),
        }

    async def forward(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "message":
            await self.forward_message(frame)
            return
        if kind == "conversation.assigned":
            # The agent's copy carries the whole history.
            conversation = frame["conversation"]
            self.shown_in(conversation["id"]).cover(conversation["last_seq"])
        await self.send_frame(frame)

    async def chat_canned_changed(self, event: dict) -> None:
        # A doorbell, not the list: each socket reads its own list (own snippets hide
        # shared ones per agent). A ring lost with Redis costs only staleness until the
        # dashboard's next `canned.list` (it sends one after every `ready`).
        try:
            frame = await on_database_thread(agent_selectors.canned_frame)(self.agent_id)
        except (DatabaseError, InterfaceError) as exc:
            logger.warning("no canned list for %s: %s", self.channel_name, exc)
            return
        await self.send_frame(frame)

    async def chat_queue(self, event: dict) -> None:
        # Two workers' readings of one queue may arrive out of order: keep the newest
        # (services._lock_queue_reading).
        site, version = event["site"], event.get("version", 0)
        if version < self.queue_versions.get(site, 0):
            return
        self.queue_versions[site] = version
        self.queue_lengths[site] = event["length"]
        length = sum(
            n
            for site, n in self.queue_lengths.items()
            if self.site_ids is None or site in self.site_ids
        )
        if length != self.queue_length:
            self.queue_length = length
            await self.send_frame({"type": "queue", "queue_length": length})


# A socket ended by an outage closes with this instead of a 500 at the handshake or 1011.
OUTAGE_ERRORS = (OperationalError, InterfaceError, *realtime.LAYER_ERRORS)


class CloseOnOutage:
    """ASGI middleware for the socket routes: when the database or Redis is down and a
    socket cannot be served (the session lookup, the consumer's channel, `hello`, the
    agent's `ready`), the client gets close 4503, "reconnect later", at once."""

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
            await send({"type": "websocket.close", "code": protocol.CLOSE_UNAVAILABLE})
