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
import logging
import math
import time
from collections.abc import Awaitable, Callable

from django.core.cache import cache
from django.db import connection, transaction

from .. import events, selectors
from ..models import Conversation
from ..store import sql

logger = logging.getLogger(__name__)

QUEUE_READING_WINDOW = 0.1

# Any constant; with the site id it names the advisory lock of one site's queue readings.
QUEUE_READING_LOCK = 0x51E0

# site -> the conversations a reading must tell from (None: the whole queue).
Wanted = dict[int, set[int] | None]


def changed(site_id: int, *, from_conversation: int | None = None) -> None:
    """Announce a change to a site's queue: positions from `from_conversation` back
    (the whole queue for None) are no longer what visitors were told."""
    events.emit_on_commit(events.QueueChanged(site_id=site_id, from_conversation=from_conversation))


def basis_changed(site_ids) -> None:
    """An agent came or went, changed capacity, or a chat ended: the wait estimates of
    these sites' queues (None: every site's) may have changed with it. A site whose
    basis is no longer the one its visitors were last told gets a reading of its whole
    queue; a site with nobody queued costs one query for all of them."""
    queued = Conversation.objects.filter(status=Conversation.Status.QUEUED)
    if site_ids is not None:
        queued = queued.filter(site_id__in=site_ids)
    for site_id in queued.values_list("site_id", flat=True).distinct():
        if _basis(site_id, fresh=True) != _told(site_id):
            changed(site_id)


# The basis each site's waiting visitors were last told, in Django's cache (shared by
# the workers when the cache is). Race: two workers' readings may store out of order;
# the next change or sweep compares again and tells everyone once more.
_TOLD_KEY = "supportdesk:queue-wait-basis:{}"
_TOLD_TTL = 24 * 3600
# A basis read this recently in this worker is reused by the readings that follow: a
# burst reads a queue many times a second, and a chat's length does not change as fast.
BASIS_FRESH_FOR = 1.0
_recent: dict[int, tuple[float, selectors.WaitBasis]] = {}


def _basis(site_id: int, *, fresh: bool = False) -> selectors.WaitBasis:
    now = time.monotonic()
    recent = _recent.get(site_id)
    if fresh or recent is None or recent[0] < now:
        recent = _recent[site_id] = (now + BASIS_FRESH_FOR, selectors.wait_basis(site_id))
    return recent[1]


def _told(site_id: int) -> selectors.WaitBasis | None:
    try:
        return cache.get(_TOLD_KEY.format(site_id))
    except Exception as exc:  # no cache: every reading tells the whole queue
        logger.warning("queue basis cache unavailable: %s", exc)
        return None


def _remember_told(site_id: int, basis: selectors.WaitBasis) -> None:
    try:
        cache.set(_TOLD_KEY.format(site_id), basis, _TOLD_TTL)
    except Exception as exc:
        logger.warning("queue basis cache unavailable: %s", exc)


def forget_basis(site_id: int) -> None:
    """The basis of a site's estimates may have changed (a chat ended, an agent came or
    went): the next reading in this worker reads it afresh."""
    _recent.pop(site_id, None)


def forget_bases(site_ids) -> None:
    """`forget_basis` for each of `site_ids` (None: every site)."""
    if site_ids is None:
        _recent.clear()
    for site_id in site_ids or ():
        forget_basis(site_id)


def forget_recent_bases() -> None:
    """Drop this worker's recently read bases (tests: ids come back between tests)."""
    _recent.clear()


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
    basis = _basis(site_id) if positions else None
    if basis is not None and basis != _told(site_id):
        starts = None  # every waiting visitor's estimate changed: tell them all
    reached = starts is None
    for conversation_id, visitor_id, position in positions:
        reached = reached or conversation_id in starts
        if reached:
            told.append((conversation_id, visitor_id, position, basis.estimate(position)))
    events.emit_on_commit(
        events.QueueRead(site_id=site_id, version=version, length=len(positions), positions=told)
    )
    if basis is not None:
        _remember_told(site_id, basis)


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
