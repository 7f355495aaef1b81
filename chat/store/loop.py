"""The worker's PostgreSQL connections on its event loop, for the one statement of an
everyday send (`conversations.messages.append_on_loop`) and the reads of a visitor's
`hello` (`sessions.identify_on_loop`, `resume.visitor_ready_on_loop`), so that the
busiest paths skip the hop to an ORM thread and back.

Not a general database layer: one statement, autocommit, its rows; anything that
needs a transaction, the ORM or SQLite stays on the ORM threads.

Hand-written rather than psycopg_pool's AsyncConnectionPool: that pool runs tasks of
its own on one event loop, and the tests run each test on a new loop and close the
connections from synchronous teardown. This is a list of idle connections and a
semaphore, per event loop.
"""

import asyncio
import functools
import logging
import weakref

import psycopg
from django.conf import settings
from django.db import connections

from .sql import PREPARE_AFTER

logger = logging.getLogger(__name__)


@functools.cache
def enabled() -> bool:
    """Whether the send path may run on the loop: PostgreSQL, and not turned off (read
    once: every message asks)."""
    return (
        settings.SUPPORTDESK_SEND_ON_LOOP
        and connections["default"].vendor == "postgresql"
        and settings.SUPPORTDESK_DB_THREADS > 0
    )


@functools.cache
def hello_enabled() -> bool:
    """Whether a visitor's `hello` may read on the loop: PostgreSQL, and not turned off."""
    return (
        settings.SUPPORTDESK_HELLO_ON_LOOP
        and connections["default"].vendor == "postgresql"
        and settings.SUPPORTDESK_DB_THREADS > 0
    )


class Unavailable(Exception):
    """The statement did not run, or its outcome is unknown: take the ORM path."""


class _Connections:
    """Up to `size` autocommit connections, opened when first needed. A connection that
    failed or was interrupted mid-statement is closed, never reused."""

    def __init__(self, size: int) -> None:
        self.idle: list[psycopg.AsyncConnection] = []
        self.every: set[psycopg.AsyncConnection] = set()
        self.turns = asyncio.Semaphore(size)

    async def _connect(self) -> psycopg.AsyncConnection:
        params = connections["default"].get_connection_params()
        # Django's cursor classes are synchronous ones; the async default binds on the
        # server, as the ORM path's `_hot_cursor` does.
        params.pop("cursor_factory", None)
        params["prepare_threshold"] = (
            PREPARE_AFTER if settings.SUPPORTDESK_PREPARED_STATEMENTS else None
        )
        conn = await psycopg.AsyncConnection.connect(**params, autocommit=True)
        self.every.add(conn)
        return conn

    def _discard(self, conn: psycopg.AsyncConnection) -> None:
        self.every.discard(conn)
        conn.pgconn.finish()  # synchronous: safe while being cancelled

    async def fetch(self, sql: str, params: list, *, every_row: bool) -> list[tuple] | tuple | None:
        """Run one statement as its own transaction and return its first row (or, with
        `every_row`, all of them).

        Raises `psycopg.IntegrityError` as it is (the statement changed nothing), and
        `Unavailable` for anything else that went wrong.
        """
        async with self.turns:
            conn = self.idle.pop() if self.idle else None
            try:
                if conn is None:
                    conn = await self._connect()
                cursor = await conn.execute(sql, params)
                row = await (cursor.fetchall() if every_row else cursor.fetchone())
            except psycopg.IntegrityError:
                self._keep_or_discard(conn)
                raise
            except psycopg.Error as exc:
                if conn is not None:
                    self._keep_or_discard(conn)
                raise Unavailable(str(exc)) from exc
            except BaseException:
                # Cancelled mid-statement (the socket went away): the connection's
                # state is unknown.
                if conn is not None:
                    self._discard(conn)
                raise
            self.idle.append(conn)
            return row

    def _keep_or_discard(self, conn: psycopg.AsyncConnection) -> None:
        idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if idle and not conn.broken:
            self.idle.append(conn)
        else:
            self._discard(conn)

    def close(self) -> None:
        for conn in list(self.every):
            self._discard(conn)
        self.idle.clear()


_by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _pool() -> _Connections:
    loop = asyncio.get_running_loop()
    pool = _by_loop.get(loop)
    if pool is None:
        pool = _by_loop[loop] = _Connections(settings.SUPPORTDESK_DB_THREADS)
    return pool


async def fetch_one(sql: str, params: list) -> tuple | None:
    """One statement's first row, on this event loop's connections (`_Connections.fetch`)."""
    return await _pool().fetch(sql, params, every_row=False)


async def fetch_all(sql: str, params: list) -> list[tuple]:
    """One statement's rows, on this event loop's connections (`_Connections.fetch`)."""
    return await _pool().fetch(sql, params, every_row=True)


def close_all() -> None:
    """Close every loop's connections (tests, before the test database is dropped)."""
    for pool in list(_by_loop.values()):
        pool.close()
    _by_loop.clear()
