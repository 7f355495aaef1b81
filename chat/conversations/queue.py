"""The queue as visitors and agents are told it: positions, waits and the queue's length.

A change to a site's queue is announced (`changed`: `QueueChanged` on commit), and a
reading of the queue (`read_queue`) tells every visitor from the changed place back its
position and the agents the length (`QueueRead`). Readings are coalesced per site and
worker by `QueueReadings`, the one scheduler: at most one running and one waiting per
site, each starting at least QUEUE_READING_WINDOW after the one before. A change made
while a reading waits is covered by it (the reading starts after the change
committed), so in a burst the arrivals and assignments of one window share one reading
instead of reading the queue once each.
"""

import asyncio
import contextvars
import math
import time
from collections.abc import Awaitable, Callable

from django.db import connection, transaction

from .. import events, selectors
from ..store import sql

QUEUE_READING_WINDOW = 0.1

# Any constant; with the site id it names the advisory lock of one site's queue readings.
QUEUE_READING_LOCK = 0x51E0

# site -> the conversations a reading must tell from (None: the whole queue).
Wanted = dict[int, set[int] | None]


def changed(site_id: int, *, from_conversation: int | None = None) -> None:
    """Announce a change to a site's queue: positions from `from_conversation` back
    (the whole queue for None) are no longer what visitors were told."""
    events.emit_on_commit(events.QueueChanged(site_id=site_id, from_conversation=from_conversation))


def want(wanted: Wanted, site_id: int, starts: set[int] | None) -> None:
    """Add a reading of a site's queue from `starts` (None: all of it) to `wanted`."""
    if site_id in wanted:
        waiting = wanted[site_id]
        if starts is None:
            wanted[site_id] = None
        elif waiting is not None:
            waiting |= starts
    else:
        wanted[site_id] = None if starts is None else set(starts)


def read_queue(site_id: int, starts: set[int] | None) -> None:
    """One reading of a site's queue: every queued visitor's position from the first of
    `starts` in the queue (all of them for None), and the length for the agents. A
    conversation of `starts` no longer queued left since it arrived: its leaving asked
    for a reading of the whole queue of its own."""
    with transaction.atomic():
        version = _lock_queue_reading(site_id)
        positions = selectors.queued_positions(site_id)
    told = []
    reached = starts is None
    for conversation_id, visitor_id, position in positions:
        reached = reached or conversation_id in starts
        if reached:
            # The estimate's basis is cached per site: no query per visitor.
            wait = selectors.estimated_wait_seconds(site_id, position)
            told.append((conversation_id, visitor_id, position, wait))
    events.emit_on_commit(
        events.QueueRead(site_id=site_id, version=version, length=len(positions), positions=told)
    )


def _lock_queue_reading(site_id: int) -> int:
    """Take the turn to read a site's queue (inside a transaction, held until it ends)
    and return the reading's `queue_version`: the database's clock, in microseconds.

    Race: two workers read one site's queue at once, and Redis may deliver the older
    reading's frames last, leaving a visitor with a stale position. Readings take turns
    under this lock, so a later turn reads a queue at least as new and gets a higher
    version; clients drop a frame older than one they have. PostgreSQL: an advisory
    lock (it writes nothing, so the read-only transaction commits without an fsync),
    and its clock, one for every worker. SQLite: the IMMEDIATE transaction already
    holds the database's write lock, and every worker is on this machine's clock.
    """
    if connection.vendor != "postgresql":
        return queue_clock()
    return sql.advisory_lock_then_clock(QUEUE_READING_LOCK, site_id)


def queue_clock() -> int:
    """Now, in microseconds, on the clock every worker shares: PostgreSQL's, else this
    machine's (SQLite). An assignment read after its commit is newer than every reading
    taken before it, so a widget drops a reading that arrives late."""
    clock = sql.database_clock()
    return time.time_ns() // 1000 if clock is None else clock


class QueueReadings:
    """The queue readings asked for in one worker, made on its event loop: per site at
    most one running and one waiting, each starting at least QUEUE_READING_WINDOW after
    the one before; nothing is held while a reading waits for its turn.

    `read(site_id, starts)` makes one reading (`read_queue` on an ORM thread, with what
    it announces sent); a failed reading is `failed(site_id, exc)`'s to log: the
    positions stay as last told until the next change's reading. `sleep` waits out a
    window (tests hold it open).
    """

    def __init__(
        self,
        read: Callable[[int, set[int] | None], Awaitable[None]],
        failed: Callable[[int, Exception], None],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.read, self.failed, self.sleep = read, failed, sleep
        self.wanted: Wanted = {}
        self.tasks: dict[int, asyncio.Task] = {}  # site -> its reader
        self.last: dict[int, float] = {}  # site -> when its latest reading began

    def request(self, readings: Wanted) -> None:
        loop = asyncio.get_running_loop()
        for site_id, starts in readings.items():
            want(self.wanted, site_id, starts)
            if site_id not in self.tasks:
                # A context of its own: not the requesting socket's outbox.
                self.tasks[site_id] = loop.create_task(
                    self._reader(site_id), context=contextvars.Context()
                )

    async def _reader(self, site_id: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            while site_id in self.wanted:
                start = self.last.get(site_id, -math.inf) + QUEUE_READING_WINDOW
                if start > loop.time():
                    await self.sleep(start - loop.time())
                starts = self.wanted.pop(site_id)
                self.last[site_id] = loop.time()
                try:
                    await self.read(site_id, starts)
                except Exception as exc:
                    # Not the asking socket's to answer (its service returned): the
                    # next request for this site reads again.
                    self.failed(site_id, exc)
        finally:
            del self.tasks[site_id]

    async def settled(self) -> None:
        """Wait for every reading asked for so far (tests, and a worker shutting down)."""
        while self.tasks:
            await asyncio.gather(*self.tasks.values())
