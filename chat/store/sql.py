"""The chat core's hand-written SQL: the statements of the send path, routing and the
queue, each a function, on the ORM's connection (`hot_cursor`).

Every statement here does what an ORM query elsewhere would, with the same row locks
and constraints; only the compile is gone. SQLite has no FOR UPDATE: there a
transaction is IMMEDIATE and already holds the database's write lock (`for_update`).
"""

import contextlib
import functools
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import NamedTuple

import msgspec
from django.conf import settings
from django.db import connection, connections, transaction

from agents.models import AgentProfile

from ..models import (
    Assignment,
    Attachment,
    Call,
    Conversation,
    ConversationRating,
    Message,
    SenderKind,
    Site,
    SocketWorker,
    Visitor,
    VisitorSocket,
)
from . import durable
from .visitor_socket_sql import RINGING_SQL, socket_counted_sql

Status = Conversation.Status

CONVERSATION_TABLE = Conversation._meta.db_table
MESSAGE_TABLE = Message._meta.db_table
VISITOR_TABLE = Visitor._meta.db_table
ATTACHMENT_TABLE = Attachment._meta.db_table
SITE_TABLE = Site._meta.db_table
ASSIGNMENT_TABLE = Assignment._meta.db_table
RATING_TABLE = ConversationRating._meta.db_table
AGENT_TABLE = AgentProfile._meta.db_table
USER_TABLE = AgentProfile._meta.get_field("user").related_model._meta.db_table
AGENT_SITES_TABLE = AgentProfile.sites.through._meta.db_table
CALL_TABLE = Call._meta.db_table
SOCKET_WORKER_TABLE = SocketWorker._meta.db_table
VISITOR_SOCKET_TABLE = VisitorSocket._meta.db_table
AGENT_SITES_AGENT = AgentProfile.sites.field.m2m_column_name()
AGENT_SITES_SITE = AgentProfile.sites.field.m2m_reverse_name()

OPEN = tuple(str(status) for status in Conversation.OPEN_STATUSES)
# The queue's order: re-queued chats (priority 1) first, then first come, first served.
QUEUE_ORDER = "queue_priority DESC, queued_at, id"

# Executions of one statement on a connection before psycopg prepares it.
PREPARE_AFTER = 2


def hot_cursor():
    """A cursor for the hot statements. On PostgreSQL it binds parameters on the
    server, so psycopg prepares each statement once per connection (after
    PREPARE_AFTER runs) and PostgreSQL stops parsing and planning it for every
    message; the ORM's own cursors keep Django's client-side binding.
    SUPPORTDESK_PREPARED_STATEMENTS=0 turns it off (older PgBouncer)."""
    if connection.vendor != "postgresql" or not settings.SUPPORTDESK_PREPARED_STATEMENTS:
        return connection.cursor()
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:  # Django turns preparing off per connection
        raw.prepare_threshold = PREPARE_AFTER
    from django.db.backends.postgresql.base import ServerBindingCursor

    with connection.wrap_database_errors:
        return connection._prepare_cursor(ServerBindingCursor(raw))


def for_update(*, skip_locked: bool = False) -> str:
    """The row-lock clause for this database: none on SQLite (see the module doc)."""
    if not connection.features.has_select_for_update:
        return ""
    return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"


def placeholders(values: Iterable) -> str:
    return ", ".join(["%s"] * len(values))


def fetch_one(sql: str, params: list) -> tuple | None:
    with hot_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def execute_once(sql: str, params: list) -> tuple | None:
    """Run one statement as a transaction of its own and return its first row. Inside
    an outer transaction (a test's) a savepoint stands in, so that a failed statement
    leaves the outer one usable, as it would leave no trace on its own."""
    savepoint = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    with savepoint:
        return fetch_one(sql, params)


# --- rows in and out without the ORM's compile ------------------------------------


def insert_new(instance):
    """`instance.save()` for a new row of a model with an automatic id: the values are
    prepared as the ORM prepares them (defaults, auto_now_add), the INSERT is written out
    once per model. No signals are sent (none are connected to the models it is used for)."""
    sql, fields = _insert_statement(type(instance), connection.alias)
    values = [
        field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields
    ]
    with hot_cursor() as cursor:
        if connection.features.can_return_columns_from_insert:
            cursor.execute(sql + " RETURNING id", values)
            instance.pk = cursor.fetchone()[0]
        else:
            cursor.execute(sql, values)
            instance.pk = cursor.lastrowid
    instance._state.adding = False
    instance._state.db = connection.alias
    return instance


@functools.cache
def _insert_statement(model, alias: str) -> tuple[str, list]:
    quote = connections[alias].ops.quote_name
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    columns = ", ".join(quote(field.column) for field in fields)
    return (
        f"INSERT INTO {model._meta.db_table} ({columns}) VALUES ({placeholders(fields)})",
        fields,
    )


def update_fields(instance, fields: list[str]) -> None:
    """`instance.save(update_fields=fields)` without the ORM's compile."""
    ops = connection.ops
    values = [
        ops.adapt_datetimefield_value(value) if isinstance(value, datetime) else value
        for value in (getattr(instance, name) for name in fields)
    ]
    assignments = ", ".join(f"{name} = %s" for name in fields)
    with hot_cursor() as cursor:
        cursor.execute(
            f"UPDATE {instance._meta.db_table} SET {assignments} WHERE id = %s",
            [*values, instance.pk],
        )


# The conversation row as the lock queries read it: every concrete field, in order.
_CONVERSATION_FIELDS = [field.attname for field in Conversation._meta.concrete_fields]


@functools.cache
def _conversation_columns(alias: str) -> tuple[str, list[tuple[int, Callable]]]:
    """The column list and the value converters the backend needs (SQLite returns
    datetimes as text), worked out once instead of by a RawQuerySet per send."""
    db = connections[alias]
    converters = []
    for index, field in enumerate(Conversation._meta.concrete_fields):
        column = field.get_col("c")
        funcs = db.ops.get_db_converters(column) + field.get_db_converters(db)
        if funcs:
            converters.append((index, functools.partial(_convert, funcs, column, db)))
    columns = ", ".join(f"c.{field.column}" for field in Conversation._meta.concrete_fields)
    return columns, converters


def _convert(funcs: list[Callable], column, db, value):
    for func in funcs:
        value = func(value, column, db)
    return value


def _conversation_from(values: list) -> Conversation:
    _columns, converters = _conversation_columns(connection.alias)
    for index, convert in converters:
        values[index] = convert(values[index])
    return Conversation.from_db(connection.alias, _CONVERSATION_FIELDS, values)


# --- the send path -------------------------------------------------------------


def lock_conversation_with_earlier_send(
    client_msg_id: str, *, visitor_id: int | None = None, conversation_id: int | None = None
) -> Conversation | None:
    """Lock a conversation (inside a transaction): the visitor's open one, or the one with
    that id. It comes annotated with `earlier_message_id`: the message already stored in
    it under `client_msg_id` (the send is a retry), else None; and, when named by id (an
    agent's send), with `agent_name`, its agent's display name (the message's author).

    The idempotency check rides on the locking SELECT, not a query of its own. Under the
    row lock nobody else can store that client_msg_id in the conversation meanwhile (and
    the unique constraint backs it)."""
    if visitor_id is not None:
        where, params = (
            f"c.visitor_id = %s AND c.status IN ({placeholders(OPEN)})",
            [visitor_id, *OPEN],
        )
        author = "NULL"
    else:
        where, params = "c.id = %s", [conversation_id]
        author = f"(SELECT a.display_name FROM {AGENT_TABLE} a WHERE a.id = c.agent_id)"
    columns, _converters = _conversation_columns(connection.alias)
    row = fetch_one(
        f"SELECT {columns}, (SELECT m.id FROM {MESSAGE_TABLE} m"
        f" WHERE m.conversation_id = c.id AND m.client_msg_id = %s), {author}"
        f" FROM {CONVERSATION_TABLE} c WHERE {where} ORDER BY c.id LIMIT 1{for_update()}",
        [client_msg_id, *params],
    )
    if row is None:
        return None
    conversation = _conversation_from(list(row[:-2]))
    conversation.earlier_message_id, conversation.agent_name = row[-2:]
    return conversation


def load_visitor(visitor_id: int, *, lock: bool = False) -> Visitor:
    """A visitor's row; with `lock`, locked (inside a transaction), so that a chat it
    opens shows the visitor to its agent without a second read."""
    clause = for_update() if lock else ""
    found = list(
        Visitor.objects.raw(f"SELECT * FROM {VISITOR_TABLE} WHERE id = %s{clause}", [visitor_id])
    )
    if not found:
        raise Visitor.DoesNotExist
    return found[0]


def earlier_visitor_message_id(visitor_id: int, client_msg_id: str) -> int | None:
    """The id of the visitor's latest message stored under `client_msg_id` in any of its
    conversations, or None (almost always: a first message)."""
    row = fetch_one(
        f"SELECT m.id FROM {MESSAGE_TABLE} m JOIN {CONVERSATION_TABLE} c"
        " ON c.id = m.conversation_id WHERE c.visitor_id = %s AND m.client_msg_id = %s"
        " AND m.sender = %s ORDER BY m.id DESC LIMIT 1",
        [visitor_id, client_msg_id, SenderKind.VISITOR],
    )
    return None if row is None else row[0]


_MESSAGE_COLUMNS = (
    "conversation_id",
    "seq",
    "sender",
    "sender_agent_id",
    "body",
    "client_msg_id",
    "created_at",
)


class AppendAtOnce(msgspec.Struct, frozen=True, gc=False):
    """The everyday send's statements: append a message to the visitor's open
    conversation (`visitor_id`), or to an open one assigned to `agent_id`, unless its
    client_msg_id is already used there (a retry). They return (conversation id, seq,
    visitor id, agent id, site id, the agent's display name for an agent's send, the
    conversation's channel and status), or no row having stored nothing.

    The conditional UPDATE takes the row lock and allocates the seq; two sends to one
    conversation queue on it, and the second re-reads the row the first committed
    (PostgreSQL re-checks the WHERE on it). On PostgreSQL the INSERT rides in the same
    statement (`both`): one round trip, no BEGIN or COMMIT of its own. SQLite cannot
    modify data in a WITH: there it is the UPDATE, then `insert_after` its row, in one
    transaction."""

    sender: str
    body: str
    client_msg_id: str
    created_at: object  # the database's form of the time sent
    visitor_id: int | None
    agent_id: int | None
    conversation_id: int | None

    @property
    def update(self) -> tuple[str, list]:
        return _append_sql(self.visitor_id is not None)[0], self._update_params

    @property
    def both(self) -> tuple[str, list]:
        """The UPDATE, the INSERT and the message's durable event (where its site asked
        for one) in one statement."""
        return _append_sql(self.visitor_id is not None)[1], (
            self._update_params + self._insert_params + [self.created_at]
        )

    def insert_after(self, row: tuple) -> tuple[str, list]:
        return _append_sql(self.visitor_id is not None)[2], [*self._insert_params, row[0]]

    @property
    def _update_params(self) -> list:
        if self.visitor_id is not None:
            which = [self.visitor_id, *OPEN]
        else:
            which = [self.conversation_id, self.agent_id, *OPEN]
        return [self.created_at, *which, self.client_msg_id]

    @property
    def _insert_params(self) -> list:
        return [self.sender, self.agent_id, self.body, self.client_msg_id, self.created_at]


@functools.cache
def _append_sql(by_visitor: bool) -> tuple[str, str, str]:
    """`AppendAtOnce`'s SQL for a visitor's send or an agent's, built once: (the UPDATE,
    the UPDATE and INSERT in one statement, the INSERT after the UPDATE)."""
    if by_visitor:
        where = f"visitor_id = %s AND status IN ({placeholders(OPEN)})"
        counters = "agent_unread = agent_unread + 1"
        author = "NULL"
    else:
        where = f"id = %s AND agent_id = %s AND status IN ({placeholders(OPEN)})"
        # Answering means having read everything before the answer.
        counters = "agent_read_seq = last_seq + 1, agent_unread = 0"
        # The message names its author as stored now (v1.1).
        author = f"(SELECT display_name FROM {AGENT_TABLE} WHERE id = agent_id)"
    returning = (
        f"id, last_seq, visitor_id, agent_id, site_id, {author} AS author_name, channel, status"
    )
    update = (
        f"UPDATE {CONVERSATION_TABLE} SET last_seq = last_seq + 1, last_activity_at = %s,"
        f" {counters} WHERE {where} AND NOT EXISTS (SELECT 1 FROM {MESSAGE_TABLE} m"
        f" WHERE m.conversation_id = {CONVERSATION_TABLE}.id AND m.client_msg_id = %s)"
        f" RETURNING {returning}"
    )
    insert = (
        f"INSERT INTO {MESSAGE_TABLE} ({', '.join(_MESSAGE_COLUMNS)})"
        " SELECT id, last_seq, %s, %s, %s, %s, %s FROM "
    )
    both = (
        f"WITH c AS ({update}), m AS ({insert}c RETURNING id), d AS ({durable.MESSAGE_SQL})"
        " SELECT id, last_seq, visitor_id, agent_id, site_id, author_name, channel, status FROM c"
    )
    return update, both, f"{insert}{CONVERSATION_TABLE} WHERE id = %s"


# --- routing --------------------------------------------------------------------


class QueuedConversations:
    """The queued conversations one routing step looks at, in queue order."""

    def __init__(
        self, site_ids: list[int] | None, blocked_sites: set[int], passed_over: set[int]
    ) -> None:
        where, params = ["status = %s"], [Status.QUEUED]
        if site_ids is not None:
            where.append(f"site_id IN ({placeholders(site_ids)})")
            params += site_ids
        if blocked_sites:
            where.append(f"site_id NOT IN ({placeholders(blocked_sites)})")
            params += blocked_sites
        if passed_over:
            where.append(f"id NOT IN ({placeholders(passed_over)})")
            params += passed_over
        self.where, self.params = " AND ".join(where), params

    def lock_oldest(self, *, skip_locked: bool) -> Conversation | None:
        """Lock and return the oldest one (inside a transaction)."""
        rows = Conversation.objects.raw(
            f"SELECT * FROM {CONVERSATION_TABLE} WHERE {self.where}"
            f" ORDER BY {QUEUE_ORDER} LIMIT 1{for_update(skip_locked=skip_locked)}",
            self.params,
        )
        return next(iter(rows), None)

    def exists(self) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {CONVERSATION_TABLE} WHERE {self.where} LIMIT 1", self.params
            )
            return cursor.fetchone() is not None


def lock_if_queued(conversation_id: int) -> Conversation | None:
    """Lock a conversation, waiting for its holder, and return it if still queued."""
    rows = Conversation.objects.raw(
        f"SELECT * FROM {CONVERSATION_TABLE} WHERE id = %s AND status = %s{for_update()}",
        [conversation_id, Status.QUEUED],
    )
    return next(iter(rows), None)


def anyone_queued_but(site_id: int, conversation_id: int) -> bool:
    row = fetch_one(
        f"SELECT 1 FROM {CONVERSATION_TABLE} WHERE site_id = %s AND status = %s"
        " AND id <> %s LIMIT 1",
        [site_id, Status.QUEUED, conversation_id],
    )
    return row is not None


def lock_agent(agent_id: int, *, skip_locked: bool) -> AgentProfile | None:
    """`select_for_update([skip_locked]).filter(pk=agent_id).first()`."""
    rows = AgentProfile.objects.raw(
        f"SELECT * FROM {AGENT_TABLE} WHERE id = %s{for_update(skip_locked=skip_locked)}",
        [agent_id],
    )
    return next(iter(rows), None)


def save_assignment(conversation: Conversation, agent: AgentProfile) -> None:
    """The two UPDATEs of an assignment."""
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {CONVERSATION_TABLE} SET status = %s, agent_id = %s, assigned_at = %s,"
            " handed_back_by_id = NULL, agent_read_seq = %s, agent_unread = %s WHERE id = %s",
            [
                conversation.status,
                agent.id,
                adapt(conversation.assigned_at),
                conversation.agent_read_seq,
                conversation.agent_unread,
                conversation.id,
            ],
        )
        cursor.execute(
            f"UPDATE {AGENT_TABLE} SET last_assigned_at = %s WHERE id = %s",
            [adapt(agent.last_assigned_at), agent.id],
        )


def present_agent_loads(site_id: int, heartbeat_cutoff: datetime) -> list[tuple[int, int, int]]:
    """(agent id, capacity, active chats) of the agents present for a site, least loaded
    first, then the one idle longest: the routing ranking (`selectors.present_agent_loads`)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT a.id, a.capacity, (SELECT COUNT(*) FROM {CONVERSATION_TABLE} c"
            "  WHERE c.agent_id = a.id AND c.status = %s) AS active_load"
            f" FROM {AGENT_TABLE} a JOIN {USER_TABLE} u ON u.id = a.user_id"
            " WHERE a.status = %s AND a.last_heartbeat >= %s AND u.is_active = %s"
            " AND a.capacity > 0"
            # `selectors.serves(site_id)`: listed for no site (every site), or for this one.
            f" AND (NOT EXISTS (SELECT 1 FROM {AGENT_SITES_TABLE} s"
            f"  WHERE s.{AGENT_SITES_AGENT} = a.id)"
            f"  OR EXISTS (SELECT 1 FROM {AGENT_SITES_TABLE} s"
            f"  WHERE s.{AGENT_SITES_AGENT} = a.id AND s.{AGENT_SITES_SITE} = %s))"
            # Never assigned (NULL) first, as `selectors.routable_agents` orders them.
            " ORDER BY active_load, a.last_assigned_at IS NOT NULL, a.last_assigned_at, a.id",
            [
                Status.ACTIVE,
                AgentProfile.Status.AVAILABLE,
                connection.ops.adapt_datetimefield_value(heartbeat_cutoff),
                True,
                site_id,
            ],
        )
        return cursor.fetchall()


def active_load(agent_id: int) -> int:
    """The agent's active chats (routing counts it under each candidate's lock)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {CONVERSATION_TABLE} WHERE agent_id = %s AND status = %s",
            [agent_id, Status.ACTIVE],
        )
        return cursor.fetchone()[0]


# --- the queue ------------------------------------------------------------------


def queued_conversations(site_id: int) -> list[tuple[int, int]]:
    """(conversation id, visitor id) of a site's whole queue, in order."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, visitor_id FROM {CONVERSATION_TABLE} WHERE site_id = %s AND status = %s"
            f" ORDER BY {QUEUE_ORDER}",
            [site_id, Status.QUEUED],
        )
        return cursor.fetchall()


_PG_CLOCK = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS bigint)"


def database_clock() -> int | None:
    """Now, in microseconds, on PostgreSQL's clock (one for every worker); None on
    other databases, whose callers use this machine's clock."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_PG_CLOCK}")
        return cursor.fetchone()[0]


def advisory_lock_then_clock(key: int, site_id: int) -> int:
    """PostgreSQL: take the transaction-scoped advisory lock (key, site_id), waiting for
    it, and return the clock read after it was granted, in one round trip (the clock is
    read from the row the lock's subquery returns)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_PG_CLOCK} FROM (SELECT pg_advisory_xact_lock(%s, %s)) AS turn",
            [key, site_id],
        )
        return cursor.fetchone()[0]


# --- messages -------------------------------------------------------------------


def messages_with_attachment_flag(conversation_id: int) -> list[Message]:
    """Every message of a conversation in seq order, each with `with_attachment` and its
    author's `author_name`."""
    return list(
        Message.objects.raw(
            f"SELECT m.*, EXISTS (SELECT 1 FROM {ATTACHMENT_TABLE} a WHERE a.message_id = m.id)"
            f" AS with_attachment, p.display_name AS author_name FROM {MESSAGE_TABLE} m"
            f" LEFT JOIN {AGENT_TABLE} p ON p.id = m.sender_agent_id"
            " WHERE m.conversation_id = %s ORDER BY m.seq",
            [conversation_id],
        )
    )


# --- a visitor's hello, on the event loop (PostgreSQL) ----------------------------
# Run through chat/store/loop.py by `sessions.identify_on_loop` and
# `resume.visitor_ready_on_loop`: the reads the ORM makes for `identify_visitor` and
# `visitor_ready`, each written out once, so a reconnect storm pays neither the ORM's
# compile nor a hop to an ORM thread per socket (docs/performance.md, change 23).


@functools.cache
def _row_reader(model, alias: str, table_alias: str) -> tuple[str, list[str], list]:
    """Every concrete column of `model` (as `table_alias.column`), the field names
    `from_db` takes, and the converters the backend needs per column (a JSON field's
    text, for one), worked out once."""
    db = connections[alias]
    fields = model._meta.concrete_fields
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(table_alias)
        funcs = db.ops.get_db_converters(column) + field.get_db_converters(db)
        if funcs:
            converters.append((index, functools.partial(_convert, funcs, column, db)))
    columns = ", ".join(f"{table_alias}.{field.column}" for field in fields)
    return columns, [field.attname for field in fields], converters


def _instance(model, table_alias: str, values: list):
    """A `model` instance from the values of `_row_reader`'s columns, as the ORM makes it."""
    _columns, names, converters = _row_reader(model, "default", table_alias)
    values = list(values)
    for index, convert in converters:
        values[index] = convert(values[index])
    return model.from_db("default", names, values)


@functools.cache
def hello_visitor_sql() -> str:
    """`identify_visitor` in one statement: the token's site and visitor (the record it
    was merged into, for another device of a verified user), and that visitor's
    `last_seen` refreshed if older than the cutoff and the site is enabled (the row
    returned shows it as it was). Parameters: now, the token's hash, the site key, the
    cutoff, the token's hash, the site key."""
    site, _names, _converters = _row_reader(Site, "default", "s")
    visitor, _names, _converters = _row_reader(Visitor, "default", "v")
    named = (
        f" FROM {VISITOR_TABLE} t JOIN {SITE_TABLE} s ON s.id = t.site_id"
        " WHERE t.token_hash = %s AND s.key = %s"
    )
    return (
        f"WITH touched AS (UPDATE {VISITOR_TABLE} SET last_seen = %s"
        f"  WHERE id = (SELECT COALESCE(t.merged_into_id, t.id){named} AND s.enabled)"
        "  AND last_seen < %s)"
        f" SELECT {site}, {visitor} FROM {VISITOR_TABLE} t"
        f" JOIN {SITE_TABLE} s ON s.id = t.site_id"
        f" JOIN {VISITOR_TABLE} v ON v.id = COALESCE(t.merged_into_id, t.id)"
        " WHERE t.token_hash = %s AND s.key = %s"
    )


def hello_visitor_from(row: tuple) -> tuple[Site, Visitor]:
    width = len(Site._meta.concrete_fields)
    return _instance(Site, "s", row[:width]), _instance(Visitor, "v", row[width:])


@functools.cache
def hello_ready_sql(*, counting: bool = False, beat: bool = False) -> str:
    """`visitor_ready`'s reads in one statement: the visitor's latest conversation (or
    a row of nulls), its agent's name, its rating, its agents' turns (`selectors.joins`:
    name and after_seq, in order) and whether agents are online for the site
    (`selectors.agents_online`, the same conditions as `present_agents`). Parameters:
    the agents' available status, the heartbeat cutoff, the site, the visitor.

    `counting`: the socket counted too (`SocketCount.count_params`, first), and one more
    column, whether a call rings (`SocketCount.ringing_params`, after the site)."""
    conversation, _names, _converters = _row_reader(Conversation, "default", "c")
    counted = f"{socket_counted_sql(beat)} " if counting else ""
    ringing = f", EXISTS {RINGING_SQL}" if counting else ""
    return (
        f"{counted}SELECT {conversation}, p.display_name, r.score,"
        " (SELECT json_agg(json_build_array(ap.display_name, a.after_seq)"
        "    ORDER BY a.started_at, a.id)"
        f"  FROM {ASSIGNMENT_TABLE} a LEFT JOIN {AGENT_TABLE} ap ON ap.id = a.agent_id"
        "  WHERE a.conversation_id = c.id),"
        " EXISTS (SELECT 1"
        f"  FROM {AGENT_TABLE} g JOIN {USER_TABLE} u ON u.id = g.user_id"
        f"  LEFT JOIN {AGENT_SITES_TABLE} gs ON gs.{AGENT_SITES_AGENT} = g.id"
        "  WHERE g.status = %s AND g.last_heartbeat >= %s AND u.is_active AND g.capacity > 0"
        f"   AND (gs.{AGENT_SITES_SITE} IS NULL OR gs.{AGENT_SITES_SITE} = %s))"
        f"{ringing} FROM (SELECT 1) AS one"
        f" LEFT JOIN LATERAL (SELECT * FROM {CONVERSATION_TABLE}"
        "  WHERE visitor_id = %s ORDER BY created_at DESC, id DESC LIMIT 1) c ON TRUE"
        f" LEFT JOIN {AGENT_TABLE} p ON p.id = c.agent_id"
        f" LEFT JOIN {RATING_TABLE} r ON r.conversation_id = c.id"
    )


class HelloReady(NamedTuple):
    conversation: Conversation | None
    agent_name: str | None
    rating: int | None
    joins: list  # [[display_name or None, after_seq], ...]
    agents_online: bool
    ringing: bool | None  # None: the statement did not count the socket


def hello_ready_from(row: tuple) -> HelloReady:
    width = len(Conversation._meta.concrete_fields)
    agent_name, rating, joins, agents_online, *ringing = row[width:]
    return HelloReady(
        conversation=None if row[0] is None else _instance(Conversation, "c", row[:width]),
        agent_name=agent_name,
        rating=rating,
        joins=joins or [],  # json (not Django's jsonb-as-text): psycopg decodes it
        agents_online=agents_online,
        ringing=ringing[0] if ringing else None,
    )


@functools.cache
def hello_messages_sql() -> str:
    """`selectors.messages_after`'s read, with whether each message has a file (those
    are read by the ORM with their attachment) and its author's name. Parameters: the
    conversation, the seq after which."""
    message, _names, _converters = _row_reader(Message, "default", "m")
    return (
        f"SELECT {message},"
        f" EXISTS (SELECT 1 FROM {ATTACHMENT_TABLE} a WHERE a.message_id = m.id),"
        " p.display_name"
        f" FROM {MESSAGE_TABLE} m LEFT JOIN {AGENT_TABLE} p ON p.id = m.sender_agent_id"
        " WHERE m.conversation_id = %s AND m.seq > %s ORDER BY m.seq"
    )


def hello_messages_from(rows: list[tuple]) -> list[Message] | None:
    """The messages of `hello_messages_sql`'s rows, each with its `author_name`; None
    if one has a file."""
    width = len(Message._meta.concrete_fields)
    messages = []
    for row in rows:
        with_attachment, author_name = row[width:]
        if with_attachment:
            return None
        message = _instance(Message, "m", row[:width])
        message.author_name = author_name
        messages.append(message)
    return messages
