"""Which visitors have the widget open, counted across every worker: one `VisitorSocket`
row per open visitor socket, and one `SocketWorker` row per worker with the heartbeat
that keeps its sockets counted.

Presence is a heartbeat, never "a row exists": a socket that closes deletes its row,
but a worker killed with kill -9 deletes nothing, so a socket counts only while its
worker's `seen_at` is younger than SUPPORTDESK_VISITOR_SOCKET_TTL; the sweep then
deletes the worker and its sockets. The heartbeat is per worker, not per socket: one
statement every few seconds, whether it holds ten widgets or ten thousand.
Calls read it (chat/conversations/calls.py): an invitation with nobody left to answer
it ends at once instead of ringing out.
"""

import math
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from ..models import Call, Conversation, SocketWorker, VisitorSocket
from ..store.visitor_socket_sql import SocketCount

# This process's name among the workers, drawn once: a restarted worker is a new one,
# and its predecessor's sockets lapse with the predecessor's heartbeat.
WORKER = uuid.uuid4().hex

# When this worker's latest beat committed (time.monotonic()). A socket opened within
# SUPPORTDESK_VISITOR_SOCKET_HEARTBEAT of it needs no beat of its own: the row's
# `seen_at` is younger than that, so it counts, and the sweep (which deletes only rows
# older than the TTL, three heartbeats) cannot have deleted it. Every hello beating
# the one row of its worker made a reconnect storm's hellos queue on that row's lock,
# each held through the commit before it (docs/performance.md, change 25).
_beaten_at = -math.inf


def _beat_is_recent() -> bool:
    return time.monotonic() - _beaten_at < settings.SUPPORTDESK_VISITOR_SOCKET_HEARTBEAT


def forget_beat() -> None:
    """The next socket opened beats first (tests: the database is emptied between them)."""
    global _beaten_at
    _beaten_at = -math.inf


def _beat(now: datetime) -> None:
    """This worker lives as of `now` (its row made on the first beat). One statement;
    inside a transaction, the caller notes it (`_beaten`) once that commits."""
    SocketWorker.objects.bulk_create(
        [SocketWorker(name=WORKER, seen_at=now)],
        update_conflicts=True,
        unique_fields=["name"],
        update_fields=["seen_at"],
    )


def _beaten(started: float) -> None:
    """A beat whose statement started at `started` (time.monotonic()) has committed."""
    global _beaten_at
    _beaten_at = max(_beaten_at, started)


def opened(*, visitor_id: int, channel: str, now: datetime | None = None) -> None:
    """A visitor socket said hello: it counts from now on, on every worker. The worker's
    beat comes first unless it beat recently, so the socket never counts under a
    worker row that is missing or stale (a just-started worker; one back from a long
    database outage)."""
    if not _beat_is_recent():
        started = time.monotonic()
        _beat(now or timezone.now())
        _beaten(started)
    # Kept if the event loop's attempt (`counting`) made it before failing.
    VisitorSocket.objects.bulk_create(
        [VisitorSocket(visitor_id=visitor_id, channel=channel, worker_id=WORKER)],
        ignore_conflicts=True,
    )


def counting(*, visitor_id: int, channel: str) -> tuple[SocketCount, float]:
    """`opened` on the worker's event loop (PostgreSQL, chat/store/loop.py): the
    parameters that count a socket inside the statement that reads its `ready` and
    whether a call rings (`resume.counted_ready_on_loop`), and when they were made, for
    `counted`. A reconnect storm makes no hop to an ORM thread for it, nor a round trip
    of its own.

    Race: the call is read in the statement's snapshot, before its row commits; a last
    tab closing elsewhere meanwhile either counts this socket (the call rings on) or
    ended the call, which this socket, already in the visitor's group, hears after."""
    beat = not _beat_is_recent()
    count = SocketCount(
        beat=beat,
        count_params=[*((WORKER, timezone.now()) if beat else ()), visitor_id, channel, WORKER],
        ringing_params=[visitor_id, Call.Status.RINGING, Conversation.Status.CLOSED],
    )
    return count, time.monotonic()


def counted(count: SocketCount, started: float) -> None:
    """The statement with `count` committed."""
    if count.beat:
        _beaten(started)


def closed(*, channel: str) -> None:
    """A visitor socket closed: it no longer counts."""
    VisitorSocket.objects.filter(channel=channel).delete()


def heartbeat(*, sockets: Mapping[str, int], now: datetime | None = None) -> None:
    """This worker and its open visitor sockets (channel name → visitor id) still live.

    One beat, and a count of the worker's rows: fewer rows than open sockets means the
    sweep deleted them while this worker was away from the database longer than the
    TTL (its beat lapsed), and they are put back, so a visitor who kept the widget open
    counts again. A row whose socket closed while its delete failed is retried by the
    caller (chat/transport/calling.py)."""
    now, started = now or timezone.now(), time.monotonic()
    with transaction.atomic():
        _beat(now)
        if VisitorSocket.objects.filter(worker_id=WORKER).count() < len(sockets):
            VisitorSocket.objects.bulk_create(
                [
                    VisitorSocket(visitor_id=visitor_id, channel=channel, worker_id=WORKER)
                    for channel, visitor_id in dict(sockets).items()
                ],
                ignore_conflicts=True,
            )
    _beaten(started)


def live(*, now: datetime | None = None) -> QuerySet[VisitorSocket]:
    """The visitor sockets that count as open at `now`: their worker beat within the TTL."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.SUPPORTDESK_VISITOR_SOCKET_TTL)
    return VisitorSocket.objects.filter(worker__seen_at__gt=cutoff)


def has_live_socket(visitor_id: int, *, now: datetime | None = None) -> bool:
    """Whether the visitor has a widget socket open on any worker."""
    return live(now=now).filter(visitor_id=visitor_id).exists()


def forget_stale(*, now: datetime | None = None) -> int:
    """The sweep's part: delete the workers whose heartbeat lapsed (killed, or away from
    the database longer than the TTL) and, with them, their sockets. How many sockets
    it deleted.

    Race: a worker back from its outage beats again as its row is deleted here. Its row
    is made anew by that beat, and its sockets, if deleted, are put back by its next
    heartbeat (`heartbeat`'s count); until then its visitors count as gone, as they
    did while its beat had lapsed."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.SUPPORTDESK_VISITOR_SOCKET_TTL)
    with transaction.atomic():
        stale, _ = SocketWorker.objects.filter(seen_at__lte=cutoff).delete()
        if not stale:
            return 0
        orphans = VisitorSocket.objects.exclude(worker_id__in=SocketWorker.objects.values("name"))
        deleted, _ = orphans.delete()
    return deleted
