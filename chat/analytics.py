"""Reads for the analytics page: how many chats, how long visitors wait, how soon agents
answer, how long chats last and how satisfied visitors are; per day, hour, site and agent.

Every number is computed by the database (GROUP BY, `percentile_cont`, indexes walked
to a rank); Python only adds up the few grouped rows that come back. A report costs the
same few queries for a hundred chats or a hundred thousand.

Definitions (also on the page and in docs/admin.md):
- wait: created -> assigned (the last assignment, if the chat was re-queued or
  transferred);
- first response: assigned -> the first agent message at or after that assignment;
- duration: assigned -> closed, for chats an agent took;
- missed: closed while still queued (the visitor left, or the system closed it, before
  any agent took it); a chat the bot answered and never handed off to people was never
  queued (`queued_at` empty) and is not missed;
- CSAT: the visitor's 1-5 rating (`ConversationRating`).
Percentiles interpolate like PostgreSQL's percentile_cont: rank = fraction * (n - 1),
between the two nearest values.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db import NotSupportedError, connections, transaction
from django.db.models import Count, F, FloatField, Func, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import ExtractHour, TruncDate
from django.utils import timezone
from django.utils.translation import gettext

from agents.models import AgentProfile

from .models import Conversation, Message, SenderKind, Site

Status = Conversation.Status

WAIT = "wait"
FIRST_RESPONSE = "first_response"
DURATION = "duration"
METRICS = (WAIT, FIRST_RESPONSE, DURATION)
FRACTIONS = (0.5, 0.9)  # median and p90
SCORES = (1, 2, 3, 4, 5)
# Rank lookups per statement on SQLite: two parameters each, under the 999 that older
# SQLite builds allow.
PICKS_PER_QUERY = 200
# The groupings every report has: everything, per site, per agent.
ALL, SITE, AGENT = "all", "site", "agent"
# Which medians and p90s each grouping reports. The wait happens before any agent takes
# the chat, so it says nothing about an agent.
PERCENTILES = {ALL: METRICS, SITE: METRICS, AGENT: (FIRST_RESPONSE, DURATION)}

ANSWERED = Q(assigned_at__isnull=False)
MISSED = Q(status=Status.CLOSED, assigned_at__isnull=True, queued_at__isnull=False)


# --- expressions ----------------------------------------------------------------------


class Milliseconds(Func):
    """`end - start` in whole milliseconds, NULL if either is NULL."""

    output_field = FloatField()
    arity = 2

    def as_sql(self, compiler, connection, **extra_context):
        raise NotSupportedError(f"analytics does not support {connection.vendor}")

    def as_sqlite(self, compiler, connection, **extra_context):
        # julianday() counts days in a double; rounding to whole milliseconds removes its
        # float noise (far below 1 ms for dates of this century).
        return self._span(
            compiler, "CAST(ROUND((julianday({end}) - julianday({start})) * 86400000) AS INTEGER)"
        )

    def as_postgresql(self, compiler, connection, **extra_context):
        return self._span(
            compiler, "ROUND(EXTRACT(EPOCH FROM ({end} - {start})) * 1000)::double precision"
        )

    def _span(self, compiler, template: str) -> tuple[str, list]:
        end, start = self.get_source_expressions()
        end_sql, end_params = compiler.compile(end)
        start_sql, start_params = compiler.compile(start)
        return template.format(end=end_sql, start=start_sql), [*end_params, *start_params]


class StartDay(TruncDate):
    """The date a timestamp falls on, in the current time zone. On SQLite in UTC (how it
    stores timestamps) the native date() replaces Django's per-row Python function,
    which costs a second on 100,000 rows."""

    def as_sqlite(self, compiler, connection, **extra_context):
        if self.get_tzname() != "UTC":
            return super().as_sql(compiler, connection, **extra_context)
        sql, params = compiler.compile(self.lhs)
        return f"date({sql})", params


class StartHour(ExtractHour):
    """The hour (0-23) of a timestamp in the current time zone; native on SQLite in UTC,
    like StartDay."""

    def as_sqlite(self, compiler, connection, **extra_context):
        if self.get_tzname() != "UTC":
            return super().as_sql(compiler, connection, **extra_context)
        sql, params = compiler.compile(self.lhs)
        return f"CAST(strftime('%%H', {sql}) AS INTEGER)", params


def first_agent_reply_at() -> Subquery:
    """When the agent first wrote at or after the (last) assignment: the lowest such seq,
    which the (conversation, seq) index finds without sorting."""
    replies = Message.objects.filter(
        conversation=OuterRef("pk"),
        sender=SenderKind.AGENT,
        created_at__gte=OuterRef("assigned_at"),
    )
    return Subquery(replies.order_by("seq").values("created_at")[:1])


def span_expressions() -> dict[str, Func]:
    """Each metric as milliseconds over a conversation row."""
    return {
        WAIT: Milliseconds(F("assigned_at"), F("created_at")),
        FIRST_RESPONSE: Milliseconds(first_agent_reply_at(), F("assigned_at")),
        DURATION: Milliseconds(F("closed_at"), F("assigned_at")),
    }


# --- the scope of a report ------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Conversations started from `start` to `end` (whole days, both included, in the
    current time zone), optionally of one site and/or one agent."""

    start: date
    end: date
    site_id: int | None = None
    agent_id: int | None = None

    @classmethod
    def last_days(cls, days: int = 30, *, today: date | None = None, **filters) -> "Scope":
        today = today or timezone.localdate()
        return cls(start=today - timedelta(days=days - 1), end=today, **filters)

    @property
    def since(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.start, time.min))

    @property
    def until(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.end + timedelta(days=1), time.min))

    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def conversations(self) -> QuerySet:
        conversations = Conversation.objects.filter(
            created_at__gte=self.since, created_at__lt=self.until
        )
        if self.site_id is not None:
            conversations = conversations.filter(site_id=self.site_id)
        if self.agent_id is not None:
            conversations = conversations.filter(agent_id=self.agent_id)
        return conversations.order_by()


# --- figures --------------------------------------------------------------------------


@dataclass
class Figures:
    """The numbers of one group of conversations (all, a site, an agent); times in
    seconds, None where no conversation has that time."""

    label: str = ""
    key: int | None = None
    chats: int = 0
    answered: int = 0
    missed: int = 0
    rated: int = 0
    score_total: int = 0
    wait: tuple[float | None, float | None] = (None, None)
    first_response: tuple[float | None, float | None] = (None, None)
    duration: tuple[float | None, float | None] = (None, None)

    @property
    def csat_average(self) -> float | None:
        return self.score_total / self.rated if self.rated else None

    @property
    def missed_share(self) -> float | None:
        return self.missed / self.chats if self.chats else None

    @property
    def wait_median(self) -> float | None:
        return self.wait[0]

    @property
    def wait_p90(self) -> float | None:
        return self.wait[1]

    @property
    def first_response_median(self) -> float | None:
        return self.first_response[0]

    @property
    def first_response_p90(self) -> float | None:
        return self.first_response[1]

    @property
    def duration_median(self) -> float | None:
        return self.duration[0]

    @property
    def duration_p90(self) -> float | None:
        return self.duration[1]


# --- counts: one GROUP BY for every count on the page ----------------------------------


def count_cells(conversations: QuerySet) -> list[dict]:
    """Chats, answered and missed per (site, agent, rating score): a few dozen rows from
    which every count on the page (totals, per site, per agent, CSAT) is a sum."""
    return list(
        conversations.values("site_id", "agent_id", score=F("rating__score"))
        .annotate(
            chats=Count("pk"),
            answered=Count("pk", filter=ANSWERED),
            missed=Count("pk", filter=MISSED),
        )
        .order_by()
    )


def _add_cell(figures: Figures, cell: dict) -> None:
    figures.chats += cell["chats"]
    figures.answered += cell["answered"]
    figures.missed += cell["missed"]
    if cell["score"] is not None:
        figures.rated += cell["chats"]
        figures.score_total += cell["score"] * cell["chats"]


def csat_distribution(cells: list[dict]) -> dict[int, int]:
    """How many ratings gave each score, 1 to 5."""
    counts = dict.fromkeys(SCORES, 0)
    for cell in cells:
        if cell["score"] is not None:
            counts[cell["score"]] += cell["chats"]
    return counts


# --- percentiles: one query for every median and p90 on the page -----------------------


def percentile_table(
    conversations: QuerySet, wanted: dict[str, tuple[str, ...]] = PERCENTILES
) -> dict[tuple[str, int | None, str], tuple]:
    """(grouping, key, metric) -> (median, p90) in seconds, for the `wanted` groupings
    and metrics: ALL (key None), SITE and AGENT (key: the id; conversations nobody took
    have no agent row). Conversations without a metric (not assigned, not closed, no
    reply) do not count for it."""
    spans = conversations.values(
        "site_id",
        "agent_id",
        **{f"{m}_ms": e for m, e in span_expressions().items()},
    )
    sql, params = spans.query.get_compiler(using=spans.db).as_sql()
    connection = connections[spans.db]
    if connection.vendor == "postgresql":
        rows = _percentiles_postgresql(connection, sql, params)
    else:
        rows = _percentiles_by_rank(connection, sql, params, wanted)
    return {
        (grouping, key, metric): tuple(None if ms is None else round(ms) / 1000 for ms in values)
        for (grouping, key, metric), values in rows.items()
        if metric in wanted.get(grouping, ())
    }


def _percentiles_postgresql(connection, spans_sql: str, params) -> dict:
    """percentile_cont per grouping set: one pass over the spans computes them all."""
    columns = ", ".join(
        f"percentile_cont({fraction}) WITHIN GROUP (ORDER BY {metric}_ms)"
        for metric in METRICS
        for fraction in FRACTIONS
    )
    sql = (
        f"SELECT GROUPING(site_id), GROUPING(agent_id), site_id, agent_id, {columns} "
        f"FROM ({spans_sql}) AS spans GROUP BY GROUPING SETS ((), (site_id), (agent_id))"
    )
    found = {}
    # The correlated first-reply subquery inflates the planner's cost estimate past
    # jit_above_cost, and compiling the query then takes longer than running it.
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        for not_site, not_agent, site, agent, *values in cursor.fetchall():
            if not_site and not_agent:
                grouping, key = ALL, None
            elif not_agent:
                grouping, key = SITE, site
            else:
                grouping, key = AGENT, agent
            if grouping == AGENT and key is None:
                continue  # missed chats: no agent
            for n, metric in enumerate(METRICS):
                pair = values[n * len(FRACTIONS) : (n + 1) * len(FRACTIONS)]
                found[(grouping, key, metric)] = tuple(pair)
    return found


def _percentiles_by_rank(connection, spans_sql: str, params, wanted: dict) -> dict:
    """The portable way (SQLite has no percentile aggregate): ORDER BY + OFFSET at each
    rank, made cheap. The spans are computed once into a temporary table; one index per
    grouping and metric has the database sort the values once, so a count per group and
    the values at the ranks are short index walks, not a sort each. Python receives one
    count per group and the two values around each rank, never the spans themselves.

    The temporary table lives in this connection's own temp schema (no lock on the main
    database, invisible to other connections) and is dropped before returning.
    """
    table = "analytics_spans"
    columns = {ALL: None, SITE: "site_id", AGENT: "agent_id"}
    found = {}
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS temp.{table}")
        cursor.execute(f"CREATE TEMP TABLE {table} AS {spans_sql}", params)
        try:
            counts = []  # (grouping, key column, group, metric, n)
            for grouping, metrics in wanted.items():
                key = columns[grouping]
                for metric in metrics:
                    column = f"{metric}_ms"
                    indexed = f"{key}, {column}" if key else column
                    cursor.execute(
                        f"CREATE INDEX temp.{table}_{grouping}_{metric} ON {table} ({indexed})"
                    )
                    if key:
                        cursor.execute(
                            f"SELECT {key}, COUNT({column}) FROM {table} "
                            f"WHERE {key} IS NOT NULL GROUP BY {key}"
                        )
                    else:
                        cursor.execute(f"SELECT NULL, COUNT({column}) FROM {table}")
                    counts += [(grouping, key, group, metric, n) for group, n in cursor if n]
            # The values at and just after each rank, many per statement.
            picks = []  # (scalar subquery, its parameters)
            for _grouping, key, group, metric, n in counts:
                column = f"{metric}_ms"
                where = f"{key} = %s AND " if key else ""
                for fraction in FRACTIONS:
                    low = int(fraction * (n - 1))
                    for offset in (low, min(low + 1, n - 1)):
                        picks.append(
                            (
                                f"(SELECT {column} FROM {table} WHERE {where}{column} "
                                f"IS NOT NULL ORDER BY {column} LIMIT 1 OFFSET %s)",
                                [group, offset] if key else [offset],
                            )
                        )
            values = []
            for first in range(0, len(picks), PICKS_PER_QUERY):
                chunk = picks[first : first + PICKS_PER_QUERY]
                cursor.execute(
                    "SELECT " + ", ".join(sql for sql, _ in chunk),
                    [param for _, params in chunk for param in params],
                )
                values += cursor.fetchone()
        finally:
            cursor.execute(f"DROP TABLE IF EXISTS temp.{table}")
    position = 0
    for grouping, _key, group, metric, n in counts:
        pair = []
        for fraction in FRACTIONS:
            rank = fraction * (n - 1)
            low, high = values[position], values[position + 1]
            position += 2
            pair.append(low + (high - low) * (rank - int(rank)))
        found[(grouping, group, metric)] = tuple(pair)
    return found


# --- per day and hour -----------------------------------------------------------------


@dataclass(frozen=True)
class Day:
    day: date
    chats: int
    missed: int


def day_hour_cells(conversations: QuerySet) -> list[dict]:
    """Chats and missed chats per (day, hour) started, in the current time zone."""
    return list(
        conversations.values(day=StartDay("created_at"), hour=StartHour("created_at"))
        .annotate(chats=Count("pk"), missed=Count("pk", filter=MISSED))
        .order_by()
    )


def chats_per_day(cells: list[dict], days: list[date]) -> list[Day]:
    chats = dict.fromkeys(days, 0)
    missed = dict.fromkeys(days, 0)
    for cell in cells:
        if cell["day"] in chats:
            chats[cell["day"]] += cell["chats"]
            missed[cell["day"]] += cell["missed"]
    return [Day(day, chats[day], missed[day]) for day in days]


def chats_per_hour(cells: list[dict]) -> list[int]:
    """Chats started in each hour of the day, 0 to 23."""
    hours = [0] * 24
    for cell in cells:
        hours[cell["hour"]] += cell["chats"]
    return hours


# --- the report -----------------------------------------------------------------------


@dataclass
class Report:
    scope: Scope
    totals: Figures
    per_day: list[Day]
    hours: list[int]
    csat: dict[int, int]
    per_site: list[Figures] = field(default_factory=list)
    per_agent: list[Figures] = field(default_factory=list)


def report(scope: Scope) -> Report:
    """Everything the analytics page shows for a scope, in a few queries whose number
    does not grow with the conversations."""
    conversations = scope.conversations()
    cells = count_cells(conversations)
    totals = Figures(label="All")
    sites: dict[int, Figures] = {}
    agents: dict[int, Figures] = {}
    for cell in cells:
        _add_cell(totals, cell)
        _add_cell(sites.setdefault(cell["site_id"], Figures(key=cell["site_id"])), cell)
        if cell["agent_id"] is not None:
            _add_cell(agents.setdefault(cell["agent_id"], Figures(key=cell["agent_id"])), cell)
    groups = {ALL: {None: totals}, SITE: sites, AGENT: agents}
    wanted = dict(PERCENTILES)
    if len(sites) == 1:
        # Every chat is that site's: its times are the totals', no need to count twice.
        del wanted[SITE]
    for (grouping, key, metric), values in percentile_table(conversations, wanted).items():
        figures = groups[grouping].get(key)
        if figures is not None:
            setattr(figures, metric, values)
    if len(sites) == 1:
        (only,) = sites.values()
        only.wait, only.first_response, only.duration = (
            totals.wait,
            totals.first_response,
            totals.duration,
        )
    site_names = dict(Site.objects.filter(pk__in=sites).values_list("pk", "name"))
    agent_names = dict(AgentProfile.objects.filter(pk__in=agents).values_list("pk", "display_name"))
    for key, figures in sites.items():
        figures.label = site_names.get(key) or gettext("Site #%(id)s") % {"id": key}
    for key, figures in agents.items():
        figures.label = agent_names.get(key) or gettext("Agent #%(id)s") % {"id": key}
    day_hours = day_hour_cells(conversations)
    return Report(
        scope=scope,
        totals=totals,
        per_day=chats_per_day(day_hours, scope.days()),
        hours=chats_per_hour(day_hours),
        csat=csat_distribution(cells),
        per_site=sorted(sites.values(), key=lambda f: (-f.chats, f.label)),
        per_agent=sorted(agents.values(), key=lambda f: (-f.chats, f.label)),
    )
