"""Which visitors have the widget open, counted across every worker: one `VisitorSocket`
row per open visitor socket, with a heartbeat timestamp its worker refreshes.

Presence is a heartbeat, never "a row exists": a socket that closes deletes its row,
but a worker killed with kill -9 deletes nothing, so a row counts only while its
`seen_at` is younger than SUPPORTDESK_VISITOR_SOCKET_TTL; the sweep deletes older ones.
Calls read it (chat/conversations/calls.py): an invitation with nobody left to answer
it ends at once instead of ringing out.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from ..models import VisitorSocket

# Rows refreshed per statement: a worker with thousands of widgets open sends a few
# statements per heartbeat, not one long IN list.
HEARTBEAT_BATCH = 500


def opened(*, visitor_id: int, channel: str, now: datetime | None = None) -> None:
    """A visitor socket said hello: it counts from now on, on every worker. One INSERT
    (a channel name is new for every socket: there is no row to update)."""
    VisitorSocket.objects.create(
        visitor_id=visitor_id, channel=channel, seen_at=now or timezone.now()
    )


def closed(*, channel: str) -> None:
    """A visitor socket closed: it no longer counts."""
    VisitorSocket.objects.filter(channel=channel).delete()


def heartbeat(*, channels: Iterable[str], now: datetime | None = None) -> None:
    """A worker's sockets still live: refresh them all, a batch per statement. A row
    whose socket closed while its delete failed (the database away) is not named here,
    so it stops counting after the TTL like a killed worker's."""
    now = now or timezone.now()
    channels = list(channels)
    for start in range(0, len(channels), HEARTBEAT_BATCH):
        batch = channels[start : start + HEARTBEAT_BATCH]
        VisitorSocket.objects.filter(channel__in=batch).update(seen_at=now)


def live(*, now: datetime | None = None) -> QuerySet[VisitorSocket]:
    """The visitor sockets that count as open at `now`."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.SUPPORTDESK_VISITOR_SOCKET_TTL)
    return VisitorSocket.objects.filter(seen_at__gt=cutoff)


def has_live_socket(visitor_id: int, *, now: datetime | None = None) -> bool:
    """Whether the visitor has a widget socket open on any worker."""
    return live(now=now).filter(visitor_id=visitor_id).exists()


def forget_stale(*, now: datetime | None = None) -> int:
    """The sweep's part: delete the rows that no longer count (their worker died, or
    their delete failed). How many it deleted."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.SUPPORTDESK_VISITOR_SOCKET_TTL)
    deleted, _ = VisitorSocket.objects.filter(seen_at__lte=cutoff).delete()
    return deleted
