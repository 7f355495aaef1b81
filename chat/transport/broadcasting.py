"""Running a service from async code: on an ORM thread, then sending what it announced
and asking for the queue readings it made due.

A service announces changes (chat/events.py); the fan-out turns them into group sends
collected in an `Outbox`, flushed here on the event loop after the service returns.
A change to a queue (`QueueChanged`) asks this worker's `QueueReadings` for a reading,
made on the loop afterwards, coalesced with the others of its window.
"""

import asyncio
import contextlib
import contextvars
import logging
import weakref
from collections.abc import Callable
from typing import Any

from .. import events
from ..conversations import queue
from ..realtime import outbox
from .orm import on_database_thread
from .outage import OUTAGE_ERRORS

logger = logging.getLogger(__name__)

# The queue readings the services run in a `broadcasting()` block asked for.
_wanted: contextvars.ContextVar[queue.Wanted | None] = contextvars.ContextVar(
    "queue_readings_wanted", default=None
)


@contextlib.asynccontextmanager
async def broadcasting():
    """Around services run from async code: what they announce is sent when the block
    ends (after an error too), and the queue readings they made due are asked of this
    loop's `QueueReadings`."""
    wanted: queue.Wanted = {}
    token = _wanted.set(wanted)
    try:
        with outbox.Outbox() as sent:
            try:
                yield
            finally:
                await outbox.flush(sent)
    finally:
        _wanted.reset(token)
        if wanted:
            queue_readings().request(wanted)


async def call_service(service: Callable, /, *args: Any, **kwargs: Any) -> Any:
    """Run a service on an ORM thread within `broadcasting()`."""
    async with broadcasting():
        return await on_database_thread(service)(*args, **kwargs)


# --- the queue readings of this worker ------------------------------------------

_readings: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# The event loop of this worker's sockets, for changes made on other threads (an HTTP
# view, the admin): their readings are made there too.
_worker_loop: asyncio.AbstractEventLoop | None = None


def queue_readings() -> queue.QueueReadings:
    """This event loop's `QueueReadings`."""
    global _worker_loop
    loop = asyncio.get_running_loop()
    readings = _readings.get(loop)
    if readings is None:
        readings = _readings[loop] = queue.QueueReadings(_read, _reading_failed)
        _worker_loop = loop
    return readings


async def _read(site_id: int, starts: set[int] | None) -> None:
    # A context of its own (the reader task's): not the asking socket's outbox.
    async with broadcasting():
        await on_database_thread(queue.read_queue)(site_id, starts)


def _reading_failed(site_id: int, exc: Exception) -> None:
    if isinstance(exc, OUTAGE_ERRORS):
        # The positions stay as last told until the next change's reading.
        logger.warning("reading the queue of site %s failed: %s", site_id, exc)
    else:
        logger.error("reading the queue of site %s failed", site_id, exc_info=exc)


def _queue_changed(event: events.QueueChanged) -> None:
    """A subscriber of `QueueChanged`: who makes the reading it calls for."""
    starts = None if event.from_conversation is None else {event.from_conversation}
    wanted = _wanted.get()
    if wanted is not None:
        # A service run by `broadcasting()`: asked for when it returns.
        queue.want(wanted, event.site_id, starts)
        return
    loop = _worker_loop
    if loop is not None and loop.is_running():
        # Another thread of a worker with sockets (an HTTP view, the admin).
        loop.call_soon_threadsafe(
            lambda: queue_readings().request({event.site_id: starts}), context=contextvars.Context()
        )
        return
    # No event loop in this process (a management command, a synchronous test): read now.
    queue.read_queue(event.site_id, starts)


def connect() -> None:
    events.subscribe(events.QueueChanged, _queue_changed)
