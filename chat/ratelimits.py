"""Rate limits shared by every worker: per visitor and per client address, on the paths
that store rows (messages, new conversations, visitor sessions).

The counts live in Redis when REDIS_URL is set, so ten workers enforce one limit, and in
this process's memory otherwise (one worker). The per-socket token bucket
(`protocol.TokenBucket`) stays in front: it costs nothing and stops most floods before
anything here is asked. Limits are strings in the `limits` library's notation, read from
settings (`SUPPORTDESK_LIMIT_*`); see docs/security.md.
"""

import asyncio
import functools
import ipaddress
import logging
from dataclasses import dataclass

from django.conf import settings
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

logger = logging.getLogger(__name__)

NAMESPACE = "supportdesk"
# A worker waits this long for Redis before letting the event through (fail open).
REDIS_TIMEOUT = 0.5


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
    if not uri.startswith("memory"):
        options = {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT}
    return MovingWindowRateLimiter(storage_from_string(uri, wrap_exceptions=True, **options))


def limiter() -> MovingWindowRateLimiter:
    return _limiter(settings.SUPPORTDESK_RATE_LIMIT_STORAGE)


def counts_over_the_network() -> bool:
    """True for Redis: then a count is a round trip, kept off the event loop."""
    return not isinstance(limiter().storage, MemoryStorage)


def reset() -> None:
    """Forget every count (tests start from zero)."""
    limiter().storage.reset()


def count(*checks: tuple[Rule, str | None]) -> None:
    """Count one event against each (rule, identity), in order; `RateLimited` on the
    first one over a limit. An unknown identity (None) is not limited."""
    strategy = limiter()
    for rule, identity in checks:
        if identity is None:
            continue
        for item in _items(getattr(settings, rule.setting)):
            try:
                allowed = strategy.hit(item, NAMESPACE, rule.name, identity)
            except StorageError as exc:
                # Fail open: a Redis outage must not stop every chat, and the per-socket
                # buckets still hold each socket to its rate.
                logger.warning("rate limits not enforced, storage unavailable: %s", exc)
                return
            if not allowed:
                logger.info("rate limited: %s %s over %s", rule.name, identity, item)
                raise RateLimited(rule, item.get_expiry())


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
        checks = ((IP_MESSAGES, self.client), (VISITOR_MESSAGES, self.visitor))
        if counts_over_the_network():
            # A thread of its own, not the database thread: a slow Redis must not
            # hold up every other socket's queries.
            await asyncio.to_thread(self._count, checks)
        else:
            self._count(checks)

    def new_conversation(self) -> None:
        """Called by `services.post_visitor_message` on the database thread, just before
        it opens a conversation; raising there stores nothing."""
        self._count(((IP_CONVERSATIONS, self.client), (VISITOR_CONVERSATIONS, self.visitor)))

    def transcript_email(self, conversation_id: int) -> None:
        """Called by `services.prepare_transcript_email` on the database thread before
        anything is mailed; raising there mails nothing. A refusal here does not count
        towards closing the socket (that is for floods of messages)."""
        count((IP_TRANSCRIPTS, self.client), (CONVERSATION_TRANSCRIPTS, str(conversation_id)))

    def accepted(self) -> None:
        self.refused_in_a_row = 0

    def _count(self, checks: tuple[tuple[Rule, str | None], ...]) -> None:
        try:
            count(*checks)
        except RateLimited:
            self.refused_in_a_row += 1
            raise
