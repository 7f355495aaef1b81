"""Rate limits shared by every worker: per visitor and per client address, on the paths
that store rows (messages, new conversations, visitor sessions).

The counts live in Redis when REDIS_URL is set (the primary, or the master Sentinel
names), so ten workers enforce one limit, and in this process's memory otherwise (one
worker). The per-socket token bucket
(`protocol.TokenBucket`) stays in front: it costs nothing and stops most floods before
anything here is asked. Limits are strings in the `limits` library's notation, read from
settings (`SUPPORTDESK_LIMIT_*`); see docs/security.md.

Two ways to count, over the same rules: `count` (the `limits` sync API) for the callers
on database threads and in sync views, and `count_on_loop` (`limits.aio` on redis-py's
asyncio client) for the per-message count, awaited on the event loop without a thread.
"""

import asyncio
import contextlib
import functools
import ipaddress
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis.asyncio
import redis.exceptions
from django.conf import settings
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from . import redis_urls

logger = logging.getLogger(__name__)

NAMESPACE = "supportdesk"
# A worker waits this long for Redis before letting the event through (fail open).
REDIS_TIMEOUT = 0.5
# After a count on the event loop failed or timed out, that loop lets messages through
# uncounted for this long before it asks Redis again: a Redis that stopped answering
# (a partition, a hung server) then costs a socket one REDIS_TIMEOUT wait now and then,
# not one per message.
STORAGE_RETRY_AFTER = 5.0
# Connections to Redis per event loop for `count_on_loop`. A count holds one for a
# single round trip, so a few dozen carry thousands of counts a second; past them a
# count waits for a free one (`_LoopCounter.turns`) within REDIS_TIMEOUT instead of
# failing at once (redis-py's plain asyncio pool raises MaxConnectionsError, which would
# let a burst of messages through uncounted).
LOOP_MAX_CONNECTIONS = 32

# The key prefix of the `limits` library's Redis storage (its default, which `count`
# uses): the event-loop counts write the same keys.
LIMITS_PREFIX = "LIMITS"
# `count_on_loop`'s counts of one event in one round trip: the `limits` library's
# moving-window acquire (limits 5.8, resources/redis/lua_scripts/
# acquire_moving_window.lua, for a cost of 1: the same list of timestamps per key, so
# the sync `count` reads and adds to the same counts) applied to each key in order,
# stopping at the first refusal. KEYS: one per limit; ARGV: the time, then each
# limit's amount and expiry. Returns the 1-based index of the refused limit, or 0.
# Two keys in one script: fine on one Redis or a Sentinel's master (no Cluster here:
# `_LoopCounter.of_running_loop`).
ACQUIRE_IN_ORDER = """
local timestamp = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[2 * i])
    local expiry = tonumber(ARGV[2 * i + 1])
    if limit < 1 then
        return i
    end
    local entry = redis.call('lindex', key, limit - 1)
    if entry and tonumber(entry) >= timestamp - expiry then
        return i
    end
    redis.call('lpush', key, timestamp)
    redis.call('ltrim', key, 0, limit - 1)
    redis.call('expire', key, expiry)
end
return 0
"""


@dataclass(frozen=True)
class Rule:
    """One kind of event counted per identity; its limits come from `setting`."""

    name: str
    setting: str


VISITOR_MESSAGES = Rule("visitor-messages", "SUPPORTDESK_LIMIT_VISITOR_MESSAGES")
IP_MESSAGES = Rule("ip-messages", "SUPPORTDESK_LIMIT_IP_MESSAGES")
VISITOR_CONVERSATIONS = Rule("visitor-conversations", "SUPPORTDESK_LIMIT_VISITOR_CONVERSATIONS")
IP_CONVERSATIONS = Rule("ip-conversations", "SUPPORTDESK_LIMIT_IP_CONVERSATIONS")
IP_SESSIONS = Rule("ip-sessions", "SUPPORTDESK_LIMIT_IP_SESSIONS")
# Transcripts mailed at a visitor's request go to any address the visitor types, with
# text the visitor wrote: limited per conversation and per address so the widget is no
# way to mail strangers in bulk.
CONVERSATION_TRANSCRIPTS = Rule(
    "conversation-transcripts", "SUPPORTDESK_LIMIT_CONVERSATION_TRANSCRIPTS"
)
IP_TRANSCRIPTS = Rule("ip-transcripts", "SUPPORTDESK_LIMIT_IP_TRANSCRIPTS")
VISITOR_UPLOADS = Rule("visitor-uploads", "SUPPORTDESK_LIMIT_VISITOR_UPLOADS")
IP_UPLOADS = Rule("ip-uploads", "SUPPORTDESK_LIMIT_IP_UPLOADS")
AGENT_UPLOADS = Rule("agent-uploads", "SUPPORTDESK_LIMIT_AGENT_UPLOADS")
# Calls: invitations per conversation (ringing a visitor again and again), and signals
# per participant (each is relayed through Redis to the other side).
CALL_INVITES = Rule("call-invites", "SUPPORTDESK_LIMIT_CALL_INVITES")
CALL_SIGNALS = Rule("call-signals", "SUPPORTDESK_LIMIT_CALL_SIGNALS")


class RateLimited(Exception):
    """Over a shared limit; the event was not acted on. `retry_after` is in seconds."""

    def __init__(self, rule: Rule, retry_after: int):
        super().__init__(f"over the {rule.name} limit")
        self.rule = rule
        self.retry_after = retry_after


@functools.cache
def _items(spec: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(spec)) if spec.strip() else ()


@functools.cache
def _limiter(uri: str) -> MovingWindowRateLimiter:
    options = {}
    if uri.startswith(redis_urls.SENTINEL_SCHEME):
        # The master Sentinel names, asked afresh after a failover (chat/redis_urls.py).
        uri, options = redis_urls.limits_storage(uri)
    if not uri.startswith("memory"):
        options |= {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT}
    return MovingWindowRateLimiter(storage_from_string(uri, wrap_exceptions=True, **options))


def limiter() -> MovingWindowRateLimiter:
    return _limiter(settings.SUPPORTDESK_RATE_LIMIT_STORAGE)


def reset() -> None:
    """Forget every count (tests start from zero). In Redis this deletes the `limits`
    keys, which the event-loop counts share with the sync ones."""
    limiter().storage.reset()


def _hits(
    checks: tuple[tuple[Rule, str | None], ...],
) -> Iterator[tuple[Rule, str, RateLimitItem]]:
    """What one event counts against, in order: each limit of each (rule, identity). An
    unknown identity (None) is not limited."""
    for rule, identity in checks:
        if identity is None:
            continue
        for item in _items(getattr(settings, rule.setting)):
            yield rule, identity, item


def _refusal(rule: Rule, identity: str, item: RateLimitItem) -> RateLimited:
    logger.info("rate limited: %s %s over %s", rule.name, identity, item)
    return RateLimited(rule, item.get_expiry())


def count(*checks: tuple[Rule, str | None]) -> None:
    """Count one event against each (rule, identity), in order; `RateLimited` on the
    first one over a limit (the ones after it are not counted). An unknown identity
    (None) is not limited. Blocks on Redis: for database threads and sync views."""
    strategy = limiter()
    for rule, identity, item in _hits(checks):
        try:
            allowed = strategy.hit(item, NAMESPACE, rule.name, identity)
        except StorageError as exc:
            # Fail open: a Redis outage must not stop every chat, and the per-socket
            # buckets still hold each socket to its rate.
            logger.warning("rate limits not enforced, storage unavailable: %s", exc)
            return
        if not allowed:
            raise _refusal(rule, identity, item)


async def count_on_loop(*checks: tuple[Rule, str | None]) -> None:
    """`count`, awaited on the running event loop: same rules, same order, same
    refusals, with no thread. In memory it is `count` itself (nothing to wait for)."""
    uri = settings.SUPPORTDESK_RATE_LIMIT_STORAGE
    if uri.startswith("memory"):
        count(*checks)
        return
    counter = _LoopCounter.of_running_loop(uri)
    if counter is None:
        # A storage limits has no redis-py asyncio client for (memcached, MongoDB,
        # Redis Cluster): counted as before, on a thread of its own.
        await asyncio.to_thread(count, *checks)
        return
    await counter.count(checks)


class _LoopCounter:
    """The asyncio Redis client and limiter of one event loop, for one storage URI.

    Per loop because a redis.asyncio connection belongs to the loop it was opened on
    (tests run many loops; one bound to a closed loop fails every command). A worker
    has one loop, so one of these."""

    # Each loop reads and writes only its own entry. Race: a loop in another thread may
    # add its entry while this one drops closed loops' entries; `list(...)` copies the
    # keys in one step under the GIL, so neither sees the dict change mid-iteration.
    _by_loop: dict[asyncio.AbstractEventLoop, "_LoopCounter"] = {}

    def __init__(self, uri: str):
        self.uri = uri
        self.resting_until = 0.0
        options = {
            "max_connections": LOOP_MAX_CONNECTIONS,
            "timeout": REDIS_TIMEOUT,
            # None: `count` bounds each count, connecting included, by REDIS_TIMEOUT; a
            # socket timeout of redis-py's own costs a task (`asyncio.wait_for`) for
            # every command written and a timer for every reply read. A count cancelled
            # mid-command closes its connection (redis-py), so no reply is left unread.
            "socket_timeout": None,
            "socket_connect_timeout": REDIS_TIMEOUT,
        }
        if uri.startswith(redis_urls.SENTINEL_SCHEME):
            # The master Sentinel names, asked afresh at each new connection.
            pool = redis_urls.blocking_loop_pool(redis_urls.parse(uri), **options)
        else:
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                uri.replace("redis+unix://", "unix://", 1), **options
            )
        self.pool = pool
        # Scripts bound to a client of one connection each (`single_connection_client`),
        # lent here one count at a time: redis-py's pool lends a connection per command
        # under a lock and a condition, with a timeout, a readiness check and its
        # metrics, about half of what a count cost the worker (docs/performance.md,
        # change 32). At most LOOP_MAX_CONNECTIONS at once; a count past them waits for
        # one, within the count's REDIS_TIMEOUT.
        self.idle: list = []
        self.turns = asyncio.Semaphore(LOOP_MAX_CONNECTIONS)
        self.acquire_in_order = self._acquire_in_order

    async def _acquire_in_order(self, keys: list[str], args: list[float]):
        """The counts of one event in one round trip (`ACQUIRE_IN_ORDER`), on the same
        keys as the `limits` library's moving window, so the sync `count` shares them."""
        async with self.turns:
            script = self.idle.pop() if self.idle else self._script()
            try:
                held = script.registered_client.connection
                if held is not None and not held.is_connected:
                    # Closed by an error or a cancel. `connect` asks a Sentinel pool for
                    # the master; the reconnect inside redis-py's send would go back to
                    # the address it had, a master that has since failed over.
                    await held.connect()
                return await script(keys, args)
            finally:
                # A connection an error or a cancel closed reconnects at its next count.
                self.idle.append(script)

    def _script(self):
        client = redis.asyncio.Redis(connection_pool=self.pool, single_connection_client=True)
        return client.register_script(ACQUIRE_IN_ORDER)

    @classmethod
    def of_running_loop(cls, uri: str) -> "_LoopCounter | None":
        loop = asyncio.get_running_loop()
        counter = cls._by_loop.get(loop)
        if counter is not None and counter.uri == uri:
            return counter
        if uri.split("://", 1)[0] not in ("redis", "rediss", "redis+unix", "redis+sentinel"):
            return None
        # Loops that have closed since (tests) hold nothing anyone can use.
        for other in list(cls._by_loop):
            if other.is_closed():
                cls._by_loop.pop(other, None)
        counter = cls._by_loop[loop] = cls(uri)
        return counter

    async def _acquire(self, hits: list[tuple[Rule, str, RateLimitItem]]) -> int:
        """Count `hits` in order in one round trip; the 1-based index of the first one
        refused (the ones after it not counted), or 0."""
        keys = [
            f"{LIMITS_PREFIX}:{item.key_for(NAMESPACE, rule.name, who)}" for rule, who, item in hits
        ]
        args: list[float] = [time.time()]
        for _rule, _identity, item in hits:
            args += [item.amount, item.get_expiry()]
        try:
            return int(await self.acquire_in_order(keys, args))
        except (redis.exceptions.RedisError, OSError, RuntimeError) as exc:
            # RuntimeError: uvloop's answer to a write on a connection Redis closed under
            # us (a master killed in a Sentinel failover) is RuntimeError("... the handler
            # is closed"), not a ConnectionError: the storage is unavailable all the
            # same, and the count fails open instead of failing the socket (1011).
            raise StorageError(exc) from exc

    async def count(self, checks: tuple[tuple[Rule, str | None], ...]) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self.resting_until:
            return
        hits = list(_hits(checks))
        if not hits:
            return
        # One round trip for the whole event (a message counts per address and per
        # visitor): a slow Redis holds a message up REDIS_TIMEOUT at most. The counts
        # stay in order inside it: a refusal by the first rule must not spend the
        # visitor's own count on a message that is not stored.
        try:
            async with asyncio.timeout(REDIS_TIMEOUT):
                refused = await self._acquire(hits)
            if refused:
                raise _refusal(*hits[refused - 1])
        except (StorageError, TimeoutError) as exc:
            # Fail open, as `count` does; and rest, so the next messages do not each
            # wait for a Redis that is not answering. A loop too busy to read Redis's
            # answers within the timeout rests too: shedding the counts is what helps it.
            now = loop.time()
            if now >= self.resting_until:
                # Once per outage (and once per retry), not once per count in flight.
                logger.warning(
                    "rate limits not enforced, storage unavailable: %s (asked again in %.0f s)",
                    str(exc) or f"no answer within {REDIS_TIMEOUT} s",
                    STORAGE_RETRY_AFTER,
                )
            self.resting_until = max(self.resting_until, now + STORAGE_RETRY_AFTER)


def client_address(ip: str | None) -> str | None:
    """The identity per-address limits count: the IPv4 address, or an IPv6 address's /64
    (a subscriber usually holds a whole /64, and could otherwise rotate addresses)."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:100]
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def scope_client(scope: dict) -> str | None:
    """The client address of an ASGI connection. Behind a proxy, daphne's
    `--proxy-headers` puts the X-Forwarded-For address here; without it, every client
    is the proxy (docs/security.md)."""
    client = scope.get("client")
    return client_address(client[0]) if client else None


def new_session(client: str | None) -> None:
    """A visitor-session request that would issue a token (new visitor or rotation)."""
    count((IP_SESSIONS, client))


class VisitorLimits:
    """The shared limits one visitor socket answers to, and how many of its sends in a
    row they refused (a flood of refusals closes the socket, as for the bucket)."""

    def __init__(self, *, visitor_id: int, client: str | None):
        self.visitor = str(visitor_id)
        self.client = client
        self.refused_in_a_row = 0

    async def message(self) -> None:
        """Called by the consumer on the event loop for each `message.send`."""
        with self._counting_refusals():
            await count_on_loop((IP_MESSAGES, self.client), (VISITOR_MESSAGES, self.visitor))

    def new_conversation(self) -> None:
        """Called by `sending.post_message` on the database thread, just before
        it opens a conversation; raising there stores nothing."""
        with self._counting_refusals():
            count((IP_CONVERSATIONS, self.client), (VISITOR_CONVERSATIONS, self.visitor))

    def transcript_email(self, conversation_id: int) -> None:
        """Called by `sessions.prepare_transcript_email` on the database thread before
        anything is mailed; raising there mails nothing. A refusal here does not count
        towards closing the socket (that is for floods of messages)."""
        count((IP_TRANSCRIPTS, self.client), (CONVERSATION_TRANSCRIPTS, str(conversation_id)))

    def accepted(self) -> None:
        self.refused_in_a_row = 0

    @contextlib.contextmanager
    def _counting_refusals(self) -> Iterator[None]:
        try:
            yield
        except RateLimited:
            self.refused_in_a_row += 1
            raise


def call_invite(conversation_id: int) -> None:
    """Called by `calls.invite` on the database thread once the agent may ring this
    conversation; raising there rings nobody."""
    count((CALL_INVITES, str(conversation_id)))


async def call_signal(participant: str) -> None:
    """Called by the consumer on the event loop for each `call.signal` of a participant
    ("visitor.N" or "agent.N"), before anything is read or relayed."""
    await count_on_loop((CALL_SIGNALS, participant))
