"""The worker's ORM threads: the services and selectors a socket calls run there, off
the event loop.

Channels runs every ORM call of a process on one thread. A message's transaction waits
on its COMMIT (an fsync on PostgreSQL), and with one thread every other socket of the
worker waits behind it. With SUPPORTDESK_DB_THREADS > 1, calls run on that many
threads, each with its own connection, and commits overlap. One socket's calls still run
one at a time (a consumer awaits each), so its order holds; calls of different sockets
were already concurrent across workers, which the row locks serialise.
"""

import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import SyncToAsync
from django.conf import settings
from django.db import close_old_connections, connections

# How often one connection answers Django's health check (CONN_HEALTH_CHECKS).
HEALTH_CHECK_EVERY = 1.0


@functools.cache
def database_threads() -> ThreadPoolExecutor | None:
    threads = settings.SUPPORTDESK_DB_THREADS
    return ThreadPoolExecutor(threads, thread_name_prefix="orm") if threads > 1 else None


@functools.cache
def on_database_thread(fn: Callable) -> Callable:
    """`fn` made awaitable, run on one of the worker's ORM threads (the wrapper is made
    once per function, not per call: every message makes several calls)."""
    executor = database_threads()
    if executor is None:
        return _DatabaseCall(fn)
    return _DatabaseCall(fn, thread_sensitive=False, executor=executor)


def forget_threads() -> None:
    """Shut the ORM threads down and forget them (tests, before the database goes)."""
    executor = database_threads()
    if executor is not None:
        executor.shutdown(wait=True)
    database_threads.cache_clear()
    on_database_thread.cache_clear()


class _DatabaseCall(SyncToAsync):
    """Channels' `database_sync_to_async`, with the connection health check at most
    once a second per connection.

    Django marks a connection unchecked after every call (close_old_connections), so
    with CONN_HEALTH_CHECKS each call began with a `SELECT 1` round trip: one statement
    in four on the message path. A connection the server dropped while idle for a
    second or more is still caught before use. One dropped within the last second (a
    PostgreSQL restart) fails its query instead: the error marks it, it is closed before
    the next call, and the client's retry (same client_msg_id) reconnects.
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
