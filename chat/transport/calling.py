"""What both sockets do about calls (docs/protocol.md "Calls"): relay a signal, hang up,
and end the calls a socket holds when it goes away. The frames only one side sends
(`call.invite` from the agent; `call.accept` and `call.decline` from the visitor) are
in that side's table (chat/transport/consumers.py), built on this.
"""

import asyncio
import logging

from .. import protocol, ratelimits
from ..conversations import calls
from ..conversations.actors import Actor
from ..protocol import ProtocolError, inbound
from .broadcasting import call_service
from .socket import ChatConsumer, in_background

logger = logging.getLogger(__name__)


class CallSignaling(ChatConsumer):
    # Who this socket speaks for (set once it is identified: hello, login).
    actor: Actor | None = None
    # The calls whose media this socket holds (it placed or accepted them): they end,
    # with reason "disconnected", when it closes.
    calls_held: set[int] | None = None

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Whatever way the socket ended (closed, dropped, crashed, the worker
            # stopping): the other side must not wait for media that cannot come.
            await self.end_held_calls()

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
