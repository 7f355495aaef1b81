"""Seq delivery: one socket shows each conversation's messages once and in seq order.

Redis orders nothing between publishers (the visitor's worker and the agent's), so a
message can overtake an earlier one still on its way, and a retried send rings every
socket again. A socket therefore sends a `message` (or the sender's `message.ack`) only
once every earlier seq of its conversation was shown, and never a seq twice.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.db import DatabaseError, InterfaceError

from ..protocol import outbound

logger = logging.getLogger(__name__)

# How long a frame waits for an earlier message of its conversation still on its way
# before that message is read from the database.
GAP_WAIT = 0.5

Frame = dict[str, Any]


class ShownSeqs:
    """The seqs of one conversation a socket has shown its client (through `ready`,
    history, `sync`, an ack or a `message` frame)."""

    # Seqs above a gap that never fills (a broadcast lost for good) are kept up to
    # this many; past it the oldest are forgotten, and a very late duplicate of one
    # of them would be shown again.
    MAX_ABOVE = 1000

    def __init__(self, through: int = 0) -> None:
        self.through = through  # every seq up to this one was shown
        self.above: set[int] = set()

    def __contains__(self, seq: int) -> bool:
        return seq <= self.through or seq in self.above

    def add(self, seq: int) -> bool:
        """Record `seq` as shown; False if it already was."""
        if seq in self:
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


class SeqDelivery:
    """The seq order of one socket. `send` writes a frame to the client; `read_between`
    reads the messages strictly between two seqs of a conversation from the database
    (on an ORM thread); `closing` says the socket is going away."""

    def __init__(
        self,
        send: Callable[[Frame], Awaitable[None]],
        read_between: Callable[[int, int, int], Awaitable[list[Frame]]],
        closing: Callable[[], bool],
    ) -> None:
        self.send, self.read_between, self.closing = send, read_between, closing
        self.shown: dict[int, ShownSeqs] = {}
        # Frames waiting for an earlier seq, and the timers that stop the wait.
        self.held: dict[int, dict[int, Frame]] = {}
        self.gap_timers: dict[int, asyncio.TimerHandle] = {}
        self.lock = asyncio.Lock()

    def shown_in(self, conversation: int) -> ShownSeqs:
        shown = self.shown.get(conversation)
        if shown is None:
            shown = self.shown[conversation] = ShownSeqs()
        return shown

    async def forward_message(self, frame: Frame) -> None:
        """A `message` frame heard from the channel layer."""
        conversation, seq = frame["conversation"], frame["seq"]
        if conversation not in self.shown:
            # First news of this conversation on this socket (its `conversation.assigned`
            # may still be on its way from another worker): nothing to wait for.
            self.shown[conversation] = ShownSeqs(through=seq - 1)
        await self.deliver(conversation, seq, frame)

    async def deliver(self, conversation: int, seq: int, frame: Frame) -> None:
        """Send `frame` (the `message` or `message.ack` of `seq`) once every earlier seq
        of the conversation was shown; until then it waits in `held`.

        Usually the earlier message is a broadcast a few milliseconds behind (the other
        side's message, published by another worker). One lost for good (a worker killed
        between commit and group_send, a Redis blip) is read from the database after
        GAP_WAIT (`fill_gap`): waiting first spares a query for every message that merely
        arrived out of order."""
        async with self.lock:
            shown = self.shown_in(conversation)
            if seq in shown:
                return
            if seq > shown.through + 1:
                self.held.setdefault(conversation, {})[seq] = frame
                if conversation not in self.gap_timers:
                    self.gap_timers[conversation] = asyncio.get_running_loop().call_later(
                        GAP_WAIT, self._gap_wait_over, conversation
                    )
                return
            shown.add(seq)
            await self.send(frame)
            await self._release_held(conversation)

    async def _release_held(self, conversation: int) -> None:
        """Send the held frames that no longer wait for anything (under `lock`)."""
        held = self.held.get(conversation)
        shown = self.shown[conversation]
        while held:
            seq = min(held)
            if seq > shown.through + 1:
                return
            frame = held.pop(seq)
            if shown.add(seq):
                await self.send(frame)
        self.held.pop(conversation, None)
        self._stop_timer(conversation)

    def _gap_wait_over(self, conversation: int) -> None:
        self.gap_timers.pop(conversation, None)
        if self.held.get(conversation) and not self.closing():
            task = asyncio.ensure_future(self.fill_gap(conversation))
            _background.add(task)
            task.add_done_callback(_background.discard)

    async def fill_gap(self, conversation: int) -> None:
        """Read the messages still missing below the held frames from the database, then
        send everything held in seq order. If the database cannot answer, the held
        frames go out anyway: the client fills gaps itself (`ready.last_seq`, `sync`)."""
        shown, held = self.shown[conversation], self.held.get(conversation, {})
        top = max(held, default=0)
        missing: list[Frame] = []
        if top > shown.through + 1:
            try:
                missing = await self.read_between(conversation, shown.through, top)
            except (DatabaseError, InterfaceError) as exc:
                logger.warning("no gap fill in conversation %s: %s", conversation, exc)
        async with self.lock:
            if self.closing():
                return
            held = self.held.pop(conversation, {})
            for message in missing:
                held.setdefault(message["seq"], outbound.message(message))
            for seq in sorted(held):
                if shown.add(seq):
                    await self.send(held[seq])
            self._stop_timer(conversation)

    def _stop_timer(self, conversation: int) -> None:
        timer = self.gap_timers.pop(conversation, None)
        if timer is not None:
            timer.cancel()

    def stop(self) -> None:
        for timer in self.gap_timers.values():
            timer.cancel()
