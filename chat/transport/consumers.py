"""The two sockets: `/ws/visitor/` (one browser tab of one visitor) and `/ws/agent/` (one
dashboard tab of one signed-in agent). Each has one table, frame schema → handler
(chat/protocol/inbound.py declares the schemas); a handler takes its decoded frame,
calls a service and answers.
"""

import asyncio
import logging
from collections.abc import Hashable
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError

from agents import selectors as agent_selectors
from agents import services as canned

from .. import (
    origins,
    protocol,
    ratelimits,
    selectors,
    transcript_email,
    visitor_context,
    visitor_history,
)
from ..conversations import bots, calls, closing, presence, ratings, routing, sending, sessions
from ..conversations.actors import Actor
from ..errors import NotFound, SiteDisabled
from ..protocol import ProtocolError, inbound, outbound
from ..realtime import groups, resume
from . import hello as hello_reads
from .broadcasting import broadcasting
from .calling import CallSignaling
from .orm import on_database_thread
from .socket import Frame, in_background

logger = logging.getLogger(__name__)

# How often a visitor socket's pings may refresh the visitor's last_seen.
VISITOR_TOUCH_EVERY = sessions.TOUCH_EVERY
# A visitor socket that has not said hello by then is closed (4400): an open socket
# that never identifies itself only costs memory.
HELLO_TIMEOUT = 10.0
# Sneak peek: a visitor socket relays a draft (`typing` with `text`) at most this often;
# drafts in between are dropped unanswered, before any database work. The widget sends
# one every 500 ms at most, so only a misbehaving client loses any.
DRAFT_MIN_INTERVAL = 0.25
# Frames that tell a visitor's tab its chat is open.
_CHAT_OPEN_FRAMES = frozenset(
    {"message", "message.ack", "conversation.queued", "conversation.assigned"}
)


class MessageSending(CallSignaling):
    # Whether a message sent now likely goes into an open conversation, so the everyday
    # send is worth trying; a wrong guess only costs time.
    chat_open = True

    async def post_message(self, sender: Actor, **kwargs: Any) -> None:
        """Store a message and acknowledge it. The everyday send first tries its one
        statement on the event loop, skipping the hop to an ORM thread; a message this
        socket expects to open a chat (`chat_open`) goes the full path at once."""
        kwargs["origin"] = self.channel_name
        posted = None
        if not self.chat_open:
            kwargs["try_at_once"] = False  # a first message: it needs the full path
        elif kwargs.get("attachment_id") is None and sending.sends_on_loop():
            async with broadcasting():
                posted = await sending.post_message_on_loop(
                    sender,
                    body=kwargs["body"],
                    client_msg_id=kwargs["client_msg_id"],
                    conversation_id=kwargs.get("conversation_id"),
                    origin=self.channel_name,
                )
            kwargs["try_at_once"] = False  # just tried: if not stored, the full path
        if posted is None:
            posted = await self.call(sending.post_message, sender=sender, **kwargs)
        await self.acknowledge(posted)


# --- visitors -------------------------------------------------------------------


class VisitorConsumer(MessageSending):
    """`/ws/visitor/`: one browser tab of one visitor."""

    visitor_id: int | None = None
    last_touch = 0.0
    # The site's sneak-peek setting as of `hello`: this socket's drafts are relayed
    # only if it was on, and its `ready` told the widget so (which discloses it).
    sneak_peek = False
    last_draft = float("-inf")
    # What this socket last told its client about agents being online.
    agents_online: bool | None = None
    hello_deadline: asyncio.TimerHandle | None = None
    saying_hello = False  # a valid hello arrived and is being answered

    async def connect(self) -> None:
        # The Origin check needs the site, so it happens at `hello` (close 4403).
        await self.accept()
        self.hello_deadline = asyncio.get_running_loop().call_later(
            HELLO_TIMEOUT, lambda: in_background(self._hello_timed_out())
        )

    async def _hello_timed_out(self) -> None:
        if self.visitor_id is None and not self.saying_hello:
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
            # (addition) Its page and time zone are advisory: a malformed one is ignored
            # (and logged) rather than a reason to refuse the hello.
            hello = inbound.decode_hello(text_data)
        except ProtocolError as exc:
            logger.info("visitor hello refused: %s", exc.detail)
            await self.close(code=protocol.CLOSE_NOT_HELLO)
            return
        # The deadline is for a client that says nothing, not for a server slow to answer
        # in a reconnect storm (closing it only adds to the storm: docs/performance.md).
        self.saying_hello = True
        if self.hello_deadline is not None:
            self.hello_deadline.cancel()
        try:
            site, visitor = await hello_reads.identify(hello)
        except SiteDisabled:
            await self.close(code=protocol.CLOSE_FORBIDDEN)
            return
        except NotFound:
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
        self.site_id = site.id
        self.language = visitor.language or self.language  # its widget's, from its session
        self.visitor = self.actor = Actor.visitor(visitor.id)
        self.limits = ratelimits.VisitorLimits(
            visitor_id=visitor.id, client=ratelimits.scope_client(self.scope)
        )
        # Join before reading the state for `ready`, so nothing committed in between is missed.
        await self.join(groups.visitor_group(visitor.id))
        await self.join(groups.site_visitors_group(site.id))
        self.sneak_peek = site.sneak_peek
        self.site_origins = site.allowed_origins
        # User-Agent from the handshake, page from the widget: written only when changed.
        context = {
            "allowed_origins": self.site_origins,
            "page": hello.page.as_dict() if hello.page else None,
            "timezone_name": hello.timezone,
            "user_agent": origins.header(self.scope, b"user-agent") or "",
        }
        if not sessions.context_unchanged(visitor, **context):
            await self.call(
                sessions.report_visitor_context, visitor_id=visitor.id, known=visitor, **context
            )
        ready = await self.visitor_socket_ready(visitor, hello.last_seq, self.sneak_peek)
        self.agents_online = ready["agents_online"]
        chat = ready["conversation"]
        self.chat_open = chat is not None and chat["status"] != "closed"
        if chat is not None:
            # Race: a message can commit between reading the conversation row and
            # reading its messages, so `messages` may reach past `last_seq`; whatever
            # `ready` carried must not come again as a `message` frame.
            through = max([chat["last_seq"], *(m["seq"] for m in ready["messages"])])
            self.delivery.shown_in(chat["id"]).cover(through)
        await self.send_frame(ready)
        await self.show_invitation()  # a call that rings now, right after `ready`

    def decode(self, text_data: str | None) -> inbound.VisitorFrame:
        # The site's setting decides whether a `typing` frame's draft is read at all.
        return inbound.decode_visitor(text_data, sneak_peek=self.sneak_peek)

    async def on_message_send(self, frame: inbound.VisitorMessageSend) -> None:
        try:
            await self.limits.message()
            await self.post_message(
                self.visitor,
                client_msg_id=frame.client_msg_id,
                body=frame.body,
                before_opening=self.limits.new_conversation,
                attachment_id=frame.attachment,
            )
        except ratelimits.RateLimited:
            await self.refuse_over_limit(frame.client_msg_id)
            return
        self.limits.accepted()

    async def on_typing(self, frame: inbound.VisitorTyping) -> None:
        if frame.text is not None:
            now = asyncio.get_running_loop().time()
            if now - self.last_draft < DRAFT_MIN_INTERVAL:
                return
            self.last_draft = now
        await self.call(
            sending.relay_typing, actor=self.visitor, active=frame.active, text=frame.text
        )

    async def on_read(self, frame: inbound.VisitorRead) -> None:
        await self.call(
            sending.mark_read, actor=self.visitor, seq=frame.seq, origin=self.channel_name
        )

    async def on_close(self, frame: inbound.VisitorConversationClose) -> None:
        await self.call(closing.close_conversation, actor=self.visitor)

    async def on_rating(self, frame: inbound.Rating) -> None:
        await self.call(
            ratings.rate_conversation,
            visitor_id=self.visitor_id,
            score=frame.score,
            comment=frame.comment,
        )

    async def on_handoff(self, frame: inbound.Handoff) -> None:
        # Routed like a new chat: the visitor hears `conversation.queued` or
        # `conversation.assigned`, as for a first message. Already with people: no-op.
        await self.call(bots.hand_off, visitor_id=self.visitor_id)

    async def on_bot_feedback(self, frame: inbound.BotFeedback) -> None:
        await self.call(
            bots.rate_bot_answer, visitor_id=self.visitor_id, seq=frame.seq, helpful=frame.helpful
        )
        await self.send_frame(outbound.bot_feedback(seq=frame.seq, helpful=frame.helpful))

    async def on_ping(self, frame: inbound.VisitorPing) -> None:
        await self.send_frame(outbound.pong())
        now = asyncio.get_running_loop().time()
        if now - self.last_touch > VISITOR_TOUCH_EVERY:
            self.last_touch = now
            await self.call(sessions.touch_visitor, visitor_id=self.visitor_id)

    async def on_page_view(self, frame: inbound.PageView) -> None:
        await self.call(
            sessions.report_visitor_context,
            visitor_id=self.visitor_id,
            allowed_origins=self.site_origins,
            page=frame.page.as_dict() if frame.page else None,
            timezone_name=frame.timezone,
        )

    async def on_transcript_email(self, frame: inbound.TranscriptEmail) -> None:
        try:
            transcript = await self.call(
                sessions.prepare_transcript_email,
                visitor_id=self.visitor_id,
                email=frame.email,
                before_sending=self.limits.transcript_email,
            )
        except ratelimits.RateLimited:
            await self.send_frame(
                ProtocolError(protocol.RATE_LIMITED, protocol.TOO_MANY_TRANSCRIPTS_TEXT).frame(
                    self.language
                )
            )
            return
        in_background(self.mail_transcript(transcript))

    async def on_call_accept(self, frame: inbound.CallAccept) -> None:
        await self.call(
            calls.accept,
            visitor_id=self.visitor_id,
            call_id=frame.call_id,
            channel=self.channel_name,
        )
        self.hold_call(frame.call_id)

    async def on_call_decline(self, frame: inbound.CallDecline) -> None:
        await self.call(calls.decline, visitor_id=self.visitor_id, call_id=frame.call_id)

    # Every visitor frame but `hello`, which opens the socket (a second one is refused
    # by the decoder).
    handlers = {
        inbound.VisitorMessageSend: on_message_send,
        inbound.VisitorTyping: on_typing,
        inbound.VisitorRead: on_read,
        inbound.VisitorConversationClose: on_close,
        inbound.Rating: on_rating,
        inbound.VisitorPing: on_ping,
        inbound.PageView: on_page_view,
        inbound.TranscriptEmail: on_transcript_email,
        inbound.CallAccept: on_call_accept,
        inbound.CallDecline: on_call_decline,
        inbound.CallSignal: CallSignaling.on_call_signal,
        inbound.CallEnd: CallSignaling.on_call_end,
        inbound.Handoff: on_handoff,
        inbound.BotFeedback: on_bot_feedback,
    }

    async def mail_transcript(self, transcript: transcript_email.TranscriptEmail) -> None:
        """Send a prepared transcript, then tell this socket how it went. A mail server
        may take seconds: the mail goes out on a thread of its own, so neither the event
        loop nor a database thread waits for it, and this socket's other frames are
        served meanwhile (the request itself was answered by nothing yet)."""
        sent = await asyncio.to_thread(transcript_email.send, transcript)
        if sent:
            frame = outbound.transcript_sent(
                conversation=transcript.conversation_id, email=transcript.to
            )
        else:
            frame = ProtocolError(protocol.UNAVAILABLE, protocol.TRANSCRIPT_NOT_MAILED_TEXT).frame(
                self.language
            )
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
                protocol.RATE_LIMITED, protocol.TOO_MANY_MESSAGES_TEXT, client_msg_id=client_msg_id
            ).frame(self.language)
        )
        if self.limits.refused_in_a_row >= protocol.RATE_LIMIT_CLOSE_AFTER:
            logger.warning("closing %s: flood over the shared limits", self.channel_name)
            await self.close(code=protocol.CLOSE_RATE_LIMITED)

    async def chat_token_rotated(self, event: dict) -> None:
        # The token this socket said hello with was replaced: it no longer identifies
        # anyone, so neither does this socket (a leaked token's reader is cut off).
        logger.info("closing visitor %s socket: token rotated", self.visitor_id)
        await self.close(code=protocol.CLOSE_UNAUTHORIZED)

    async def chat_visitor_moved(self, event: dict) -> None:
        # The token stands for a verified user's visitor now (identity verification):
        # the client reconnects with it, as for any socket that may have missed events.
        logger.info("closing visitor %s socket: moved to a verified user", self.visitor_id)
        await self.close(code=protocol.CLOSE_UNAVAILABLE)

    async def send_frame(self, frame: Frame) -> None:
        # What this tab has been told says whether the visitor has a chat open (another
        # tab may open or close it): a first message skips the everyday send.
        kind = frame["type"]
        if kind in _CHAT_OPEN_FRAMES:
            self.chat_open = True
        elif kind == "conversation.closed":
            self.chat_open = False
        await super().send_frame(frame)

    def shared_groups(self) -> set[str]:
        return {groups.site_visitors_group(self.site_id)}

    async def refresh_shared(self) -> None:
        # The site's visitors group carries "agents online" alone (realtime/fanout.py).
        online = await on_database_thread(selectors.agents_online)(self.site_id)
        await self.forward(outbound.agents_online(online=online))

    async def forward(self, frame: Frame) -> None:
        if frame["type"] == "message":
            await self.delivery.forward_message(frame)
        elif frame["type"] == "agents.online":
            # Several workers may announce the same change: show the client changes only.
            if frame["online"] != self.agents_online:
                self.agents_online = frame["online"]
                await self.send_frame(frame)
        else:
            await self.send_frame(frame)


# --- agents ---------------------------------------------------------------------


class AgentConsumer(MessageSending):
    """`/ws/agent/`: one dashboard tab of one signed-in agent."""

    rate_setting = "SUPPORTDESK_AGENT_RATE"
    agent_id: int | None = None
    heartbeat_task: asyncio.Task | None = None

    async def websocket_connect(self, message: dict) -> None:
        # Agent sockets carry the session cookie: only the app's own pages may open
        # them (cross-site WebSocket hijacking), so a foreign Origin is refused at the
        # handshake.
        origin = origins.header(self.scope, b"origin")
        if not origins.is_own_origin(origin or "", origins.header(self.scope, b"host")):
            logger.warning("agent socket refused for origin %r", origin)
            await self.close()
            return
        await super().websocket_connect(message)

    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        agent_id = None
        if user is not None and user.is_authenticated and user.is_active:
            agent_id = await on_database_thread(selectors.agent_id_for_user)(user.pk)
        if agent_id is None:
            await self.close(code=protocol.CLOSE_UNAUTHORIZED)
            return
        self.agent_id = agent_id
        self.agent = self.actor = Actor.agent(agent_id)
        visitor_context.warm_up()  # ua-parser's rules, off the database thread, once
        await self.join(groups.agent_group(agent_id))
        await self.join(groups.AGENTS_GROUP)
        # Connecting counts as a heartbeat, and may free this agent to take the queue.
        await self.call(presence.heartbeat, agent_id=agent_id, route=True)
        ready, self.site_ids, self.queue_lengths = await on_database_thread(resume.agent_ready)(
            agent_id
        )
        self.queue_versions: dict[int, int] = {}
        self.queue_length = ready["queue_length"]
        for conversation in ready["conversations"]:
            # The dashboard `sync`s up to each `last_seq`; frames continue after it.
            self.delivery.shown_in(conversation["id"]).cover(conversation["last_seq"])
        await self.send_frame(ready)
        self.heartbeat_task = asyncio.create_task(self._heartbeat_loop())

    async def _heartbeat_loop(self) -> None:
        interval = settings.SUPPORTDESK_HEARTBEAT_INTERVAL
        while True:
            await asyncio.sleep(interval)
            try:
                alive = await self.call(presence.heartbeat, agent_id=self.agent_id)
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
        # The login was deactivated: close now rather than at the next heartbeat.
        logger.info("closing agent %s socket: login deactivated", self.agent_id)
        await self.close(code=protocol.CLOSE_UNAUTHORIZED)

    async def receive_frame(self, text_data: str | None) -> None:
        if self.agent_id is None:
            return
        await super().receive_frame(text_data)

    def decode(self, text_data: str | None) -> inbound.AgentFrame:
        return inbound.decode_agent(text_data)

    def lane_of(self, frame: inbound.AgentFrame) -> Hashable | None:
        # One lane per conversation: an agent's frames about one chat keep their order
        # (its messages' seqs, a close after the sends before it), while a send waiting
        # on the database holds up neither the agent's other chats nor its events. The
        # rest (presence, ping, canned responses) is rare and handled in line. A
        # visitor's socket has one chat and handles everything in line: its frames come
        # seconds apart, and its client sees replies before what they caused.
        return getattr(frame, "conversation", None)

    async def on_message_send(self, frame: inbound.AgentMessageSend) -> None:
        await self.post_message(
            self.agent,
            conversation_id=frame.conversation,
            client_msg_id=frame.client_msg_id,
            body=frame.body,
            attachment_id=frame.attachment,
        )

    async def on_note_send(self, frame: inbound.NoteSend) -> None:
        posted = await self.call(
            sending.post_note,
            agent_id=self.agent_id,
            conversation_id=frame.conversation,
            client_msg_id=frame.client_msg_id,
            body=frame.body,
        )
        ack = outbound.note_ack(
            client_msg_id=frame.client_msg_id, conversation=frame.conversation, id=posted.note["id"]
        )
        await self.send_frame(ack)
        if not posted.created:
            # A retry: this tab may have missed the first `note` frame.
            await self.send_frame(outbound.note(posted.note))

    async def on_typing(self, frame: inbound.AgentTyping) -> None:
        await self.call(
            sending.relay_typing,
            actor=self.agent,
            conversation_id=frame.conversation,
            active=frame.active,
        )

    async def on_read(self, frame: inbound.AgentRead) -> None:
        await self.call(
            sending.mark_read,
            actor=self.agent,
            conversation_id=frame.conversation,
            seq=frame.seq,
            origin=self.channel_name,
        )

    async def on_sync(self, frame: inbound.Sync) -> None:
        reply = await on_database_thread(resume.sync)(
            agent_id=self.agent_id, conversation_id=frame.conversation, after_seq=frame.after_seq
        )
        shown = self.delivery.shown_in(frame.conversation)
        for message in reply["messages"]:
            shown.add(message["seq"])
        await self.send_frame(reply)

    async def on_presence(self, frame: inbound.Presence) -> None:
        await self.call(
            presence.set_presence,
            agent_id=self.agent_id,
            status=frame.status,
            origin=self.channel_name,
        )
        await self.send_frame(outbound.presence(status=frame.status))

    async def on_close(self, frame: inbound.AgentConversationClose) -> None:
        await self.call(
            closing.close_conversation, actor=self.agent, conversation_id=frame.conversation
        )

    async def on_transfer(self, frame: inbound.ConversationTransfer) -> None:
        await self.call(
            routing.transfer_conversation,
            agent_id=self.agent_id,
            conversation_id=frame.conversation,
            to_agent_id=frame.to_agent,
        )

    async def on_visitor_profile(self, frame: inbound.VisitorProfile) -> None:
        read = on_database_thread(visitor_history.visitor_profile)
        await self.send_frame(await read(self.agent_id, frame.conversation))

    async def on_conversation_history(self, frame: inbound.ConversationHistory) -> None:
        read = on_database_thread(visitor_history.conversation_history)
        await self.send_frame(await read(self.agent_id, frame.conversation))

    async def on_agents_list(self, frame: inbound.AgentsList) -> None:
        colleagues = await on_database_thread(selectors.colleagues)(self.agent_id)
        await self.send_frame(outbound.agents(colleagues))

    async def on_canned_list(self, frame: inbound.CannedList) -> None:
        await self.send_canned_list()

    async def on_canned_create(self, frame: inbound.CannedCreate) -> None:
        saved = await self.call(
            canned.create_canned_response,
            agent_id=self.agent_id,
            shortcut=frame.shortcut,
            body=frame.body,
            shared=frame.shared,
        )
        await self.send_frame(outbound.canned_saved(saved))

    async def on_canned_update(self, frame: inbound.CannedUpdate) -> None:
        saved = await self.call(
            canned.update_canned_response,
            agent_id=self.agent_id,
            response_id=frame.id,
            shortcut=frame.shortcut,
            body=frame.body,
        )
        await self.send_frame(outbound.canned_saved(saved))

    async def on_canned_delete(self, frame: inbound.CannedDelete) -> None:
        await self.call(canned.delete_canned_response, agent_id=self.agent_id, response_id=frame.id)
        await self.send_frame(outbound.canned_deleted(id=frame.id))

    async def on_queue_list(self, frame: inbound.QueueList) -> None:
        waiting = await on_database_thread(selectors.queue_for_agent)(self.agent_id)
        self.queue_length = len(waiting)
        await self.send_frame(outbound.queue(queue_length=len(waiting), conversations=waiting))

    async def on_take(self, frame: inbound.ConversationTake) -> None:
        await self.call(
            routing.take_conversation, agent_id=self.agent_id, conversation_id=frame.conversation
        )

    async def on_ping(self, frame: inbound.AgentPing) -> None:
        await self.send_frame(outbound.pong())
        await self.call(presence.heartbeat, agent_id=self.agent_id)
        if frame.idle_seconds is not None:
            # (addition) The dashboard's idle time: the server decides auto-away.
            await self.call(
                presence.report_activity, agent_id=self.agent_id, idle_seconds=frame.idle_seconds
            )

    async def on_call_invite(self, frame: inbound.CallInvite) -> None:
        try:
            placed = await self.call(
                calls.invite,
                agent_id=self.agent_id,
                conversation_id=frame.conversation,
                media=frame.media,
                channel=self.channel_name,
                before_ringing=ratelimits.call_invite,
            )
        except ratelimits.RateLimited:
            await self.refuse(ProtocolError(protocol.RATE_LIMITED, protocol.TOO_MANY_CALLS_TEXT))
            return
        self.hold_call(placed.call_id)
        self.ring_until(placed)

    handlers = {
        inbound.Presence: on_presence,
        inbound.AgentMessageSend: on_message_send,
        inbound.NoteSend: on_note_send,
        inbound.ConversationTransfer: on_transfer,
        inbound.AgentsList: on_agents_list,
        inbound.VisitorProfile: on_visitor_profile,
        inbound.ConversationHistory: on_conversation_history,
        inbound.CannedList: on_canned_list,
        inbound.CannedCreate: on_canned_create,
        inbound.CannedUpdate: on_canned_update,
        inbound.CannedDelete: on_canned_delete,
        inbound.QueueList: on_queue_list,
        inbound.ConversationTake: on_take,
        inbound.AgentTyping: on_typing,
        inbound.AgentRead: on_read,
        inbound.Sync: on_sync,
        inbound.AgentConversationClose: on_close,
        inbound.AgentPing: on_ping,
        inbound.CallInvite: on_call_invite,
        inbound.CallSignal: CallSignaling.on_call_signal,
        inbound.CallEnd: CallSignaling.on_call_end,
    }

    async def send_canned_list(self) -> None:
        responses, can_edit_shared = await on_database_thread(agent_selectors.canned_for)(
            self.agent_id
        )
        await self.send_frame(outbound.canned(responses=responses, can_edit_shared=can_edit_shared))

    async def forward(self, frame: Frame) -> None:
        kind = frame["type"]
        if kind == "message":
            await self.delivery.forward_message(frame)
            return
        if kind == "conversation.assigned":
            # The agent's copy carries the whole history.
            conversation = frame["conversation"]
            self.delivery.shown_in(conversation["id"]).cover(conversation["last_seq"])
        await self.send_frame(frame)

    async def chat_canned_changed(self, event: dict) -> None:
        # A doorbell, not the list: each socket reads its own list (own snippets hide
        # shared ones per agent). A ring lost with Redis costs only staleness until the
        # dashboard's next `canned.list` (it sends one after every `ready`).
        try:
            await self.send_canned_list()
        except (DatabaseError, InterfaceError) as exc:
            logger.warning("no canned list for %s: %s", self.channel_name, exc)

    def shared_groups(self) -> set[str]:
        return {groups.AGENTS_GROUP}

    async def refresh_shared(self) -> None:
        # The agents' group carries the queues' lengths and "shared canned responses
        # changed" alone (realtime/fanout.py). Read after the loss, so at least as new as
        # any reading it missed. Race: a reading another worker published before this
        # read may still arrive after it (its version is newer than any this socket
        # kept) and show a length a moment old, until the queue's next change.
        self.queue_lengths = await on_database_thread(selectors.queue_lengths)()
        await self._send_queue_length()
        await self.send_canned_list()

    async def chat_queue(self, event: dict) -> None:
        # Two workers' readings of one queue may arrive out of order: keep the newest.
        site, version = event["site"], event.get("version", 0)
        if version < self.queue_versions.get(site, 0):
            return
        self.queue_versions[site] = version
        self.queue_lengths[site] = event["length"]
        await self._send_queue_length()

    async def _send_queue_length(self) -> None:
        length = sum(
            n
            for site, n in self.queue_lengths.items()
            if self.site_ids is None or site in self.site_ids
        )
        if length != self.queue_length:
            self.queue_length = length
            await self.send_frame(outbound.queue(queue_length=length))
