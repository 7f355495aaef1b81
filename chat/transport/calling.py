"""What both sockets do about calls (docs/protocol.md "Calls"): relay a signal, hang up,
and end the calls a socket holds when it goes away; for a visitor socket, count it in
the visitor's presence across workers (an invitation with no widget left to answer it
ends within seconds) and show it a call that rings as it connects. The frames only one side
sends (`call.invite` from the agent; `call.accept` and `call.decline` from the visitor)
are in that side's table (chat/transport/consumers.py), built on this.
"""

import asyncio
import logging
import weakref

from django.conf import settings

from .. import protocol, ratelimits
from ..conversations import calls, visitor_sockets
from ..conversations.actors import Actor
from ..protocol import ProtocolError, inbound, outbound
from . import hello
from .background import start_once
from .broadcasting import call_service
from .orm import on_database_thread
from .socket import ChatConsumer, in_background

logger = logging.getLogger(__name__)

# The visitor sockets open on each event loop (one per worker), channel name → visitor
# id: the heartbeat keeps these counted, and puts their rows back if a sweep deleted
# them while the worker was away from the database (visitor_sockets.heartbeat).
_visitor_sockets_here: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# The closed ones whose row could not be deleted (the database away): retried with
# each heartbeat, since the worker's beat would otherwise keep them counted.
_unforgotten_here: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _open_here() -> dict[str, int]:
    return _visitor_sockets_here.setdefault(asyncio.get_running_loop(), {})


def _unforgotten() -> dict[str, int]:
    return _unforgotten_here.setdefault(asyncio.get_running_loop(), {})


class CallSignaling(ChatConsumer):
    # Who this socket speaks for (set once it is identified: hello, login).
    actor: Actor | None = None
    # The calls whose media this socket holds (it placed or accepted them): they end,
    # with reason "disconnected", when it closes.
    calls_held: set[int] | None = None

    # A visitor socket counted in its visitor's presence (`visitor_socket_ready`).
    counted_as_visitor_socket = False
    # The invitation this visitor socket showed right after `ready`: the same call's
    # `call.invited` broadcast, which may arrive after it, is not shown twice.
    invitation_shown: int | None = None
    pending_invitation: calls.Invitation | None = None

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Whatever way the socket ended (closed, dropped, crashed, the worker
            # stopping): the other side must not wait for media that cannot come.
            await self.end_held_calls()
            await self.visitor_socket_gone()

    def hold_call(self, call_id: int) -> None:
        if self.calls_held is None:
            self.calls_held = set()
        self.calls_held.add(call_id)

    async def end_held_calls(self) -> None:
        held, self.calls_held = self.calls_held or set(), None
        for call_id in held:
            try:
                await call_service(calls.socket_gone, call_id=call_id, channel=self.channel_name)
            except Exception:
                # The database is away: the other side's browser sees the media stop
                # and hangs up, or the conversation's sweep ends the call.
                logger.exception("call %s not ended after %s closed", call_id, self.channel_name)

    async def visitor_socket_ready(self, visitor, last_seq: int, sneak_peek: bool) -> dict:
        """The `ready` of `visitor` (as `sessions.identify_visitor` found it; see
        chat/realtime/resume.py), read with what goes with it (chat/transport/hello.py):
        this socket counts as one of the visitor's open widgets on every worker from now
        until it closes, and a call ringing for the visitor is kept for
        `show_invitation`, right after `ready`.

        Counted before the call is read: a close of the visitor's other last tab on
        another worker either counts this one (the call keeps ringing and is shown here)
        or ended the call first (this socket, in the visitor's group since before
        `ready`, reads no call or hears `call.ended`)."""
        self.counted_as_visitor_socket = True  # set first: a lost answer still deletes
        _open_here()[self.channel_name] = visitor.id
        interval = settings.SUPPORTDESK_VISITOR_SOCKET_HEARTBEAT
        if interval > 0:
            start_once("visitor-sockets", lambda: _refresh_visitor_sockets(interval))
        ready, self.pending_invitation = await hello.counted_and_ready(
            visitor, last_seq, channel=self.channel_name, sneak_peek=sneak_peek
        )
        return ready

    async def show_invitation(self) -> None:
        """Send the call that rang as this socket said `hello`, as the visitor's tabs
        got it when it was placed (the widget loads its call code for it)."""
        invitation, self.pending_invitation = self.pending_invitation, None
        if invitation is None:
            return
        self.invitation_shown = invitation.call_id
        await self.send_frame(
            outbound.call_invited(
                conversation=invitation.conversation_id,
                call_id=invitation.call_id,
                media=invitation.media,
                ice_servers=invitation.ice_servers,
                agent=invitation.agent,
            )
        )

    async def visitor_socket_gone(self) -> None:
        """This visitor socket closed: after SUPPORTDESK_VISITOR_SOCKET_GRACE seconds it
        no longer counts, and if it was the visitor's last one on any worker then, a call
        ringing for the visitor ends ("disconnected"). Until then its row stays (no
        longer refreshed): a reload's next page, or a link followed on the site, says
        `hello` meanwhile and is shown the call, which rings on."""
        if not self.counted_as_visitor_socket:
            return
        self.counted_as_visitor_socket = False
        _open_here().pop(self.channel_name, None)
        visitor_id, channel = self.actor.visitor_id, self.channel_name
        grace = settings.SUPPORTDESK_VISITOR_SOCKET_GRACE
        if grace > 0:
            # A worker that dies (or stops) within the grace forgets nothing: the row
            # lapses after the TTL, and the sweep ends an invitation nobody can answer.
            asyncio.get_running_loop().call_later(
                grace, lambda: in_background(_visitor_socket_forgotten(visitor_id, channel))
            )
        else:
            await _visitor_socket_forgotten(visitor_id, channel)

    async def chat_frame(self, event: dict) -> None:
        frame = event["frame"]
        if frame["type"] == "call.invited" and frame["call_id"] == self.invitation_shown:
            return  # shown after `ready` already (race: the invite committed as we read)
        await super().chat_frame(event)

    async def on_call_signal(self, frame: inbound.CallSignal) -> None:
        try:
            await ratelimits.call_signal(f"{self.actor.kind}.{self.actor_id}")
        except ratelimits.RateLimited:
            await self.refuse(ProtocolError(protocol.RATE_LIMITED, protocol.TOO_MANY_SIGNALS_TEXT))
            return
        await self.call(
            calls.relay_signal,
            actor=self.actor,
            call_id=frame.call_id,
            channel=self.channel_name,
            data=frame.data,
        )

    async def on_call_end(self, frame: inbound.CallEnd) -> None:
        await self.call(calls.hang_up, actor=self.actor, call_id=frame.call_id)
        if self.calls_held:
            self.calls_held.discard(frame.call_id)

    @property
    def actor_id(self) -> int | None:
        return self.actor.visitor_id if self.actor.is_visitor else self.actor.agent_id

    def ring_until(self, placed: calls.PlacedCall) -> None:
        """Time out an invitation this worker placed. The timer belongs to the worker,
        not the socket: a closed socket ends the call sooner anyway (`socket_gone`), and
        a worker that dies leaves it to any worker's sweep (`calls.sweep`)."""
        asyncio.get_running_loop().call_later(
            placed.ring_seconds, lambda: in_background(_time_out(placed.call_id))
        )


async def _time_out(call_id: int) -> None:
    try:
        await call_service(calls.expire, call_id=call_id)
    except Exception:
        logger.exception("call %s: the timeout failed; the sweep will end it", call_id)


async def _visitor_socket_forgotten(visitor_id: int, channel: str) -> None:
    try:
        await call_service(calls.visitor_socket_closed, visitor_id=visitor_id, channel=channel)
    except Exception:
        # The database is away: the row stays, and this worker's beat would keep it
        # counted; the heartbeat tries again, and meanwhile an invitation to this visitor
        # rings on (at worst until its timeout).
        _unforgotten()[channel] = visitor_id
        logger.exception("visitor socket %s not forgotten; retried with the heartbeat", channel)


async def _refresh_visitor_sockets(interval: float) -> None:
    """This worker's heartbeat for its visitor sockets, every `interval` seconds."""
    sockets, unforgotten = _open_here(), _unforgotten()
    while True:
        await asyncio.sleep(interval)
        for channel, visitor_id in list(unforgotten.items()):
            del unforgotten[channel]
            await _visitor_socket_forgotten(visitor_id, channel)
        try:
            # The ORM thread copies `sockets` at once (dict(), atomic under the GIL)
            # while this loop goes on opening and closing them.
            await on_database_thread(visitor_sockets.heartbeat)(sockets=sockets)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The database is away: the beat may lapse, and then an invitation ringing
            # for one of these visitors ends ("disconnected") at the next sweep.
            logger.exception("visitor sockets' heartbeat failed")
