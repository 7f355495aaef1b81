"""What happened in the chat core, as typed domain events, and who hears of it.

Services announce every change with `emit_on_commit(event)`. Subscribers hear it once
the transaction that made the change commits (at once outside a transaction), so nobody
acts on a change that was rolled back. Real-time fan-out (chat/realtime/fanout.py) is
one subscriber; capabilities (webhooks, the bot, mail, analytics) subscribe the same
way from their own app's `ready()`, and the services never import any of them.

A subscriber that must commit or fail with the change itself (an outbox row written in
the same transaction) subscribes `in_transaction=True`: it runs inside the transaction,
at the emit, and its exception rolls the change back.
"""

import functools
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from django.db import transaction

logger = logging.getLogger(__name__)


class Event(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of the domain events: frozen values (ids and the wire shapes the record
    already had), never a model instance that could go stale. msgspec Structs: made for
    every message, they cost a twentieth of a frozen dataclass, and a subscriber that
    sends them on (webhooks) can encode them as they are. They hold no cycle (gc=False)."""


class ConversationEvent(Event):
    """Something that happened in one conversation, with who is in it (its agent, if
    any, as of the change): subscribers choose whom to tell from these."""

    conversation_id: int
    site_id: int
    visitor_id: int
    agent_id: int | None
    # When it happened by the clock of its cause, as stored (the conversation's
    # created_at, assigned_at, ...); None: when it is emitted. Webhooks stamp it.
    # (Subclasses say kw_only=True: their own fields follow this defaulted one.)
    at: datetime | None = None


def about(conversation) -> dict[str, Any]:
    """The `ConversationEvent` fields of a conversation row, as it is now."""
    return {
        "conversation_id": conversation.id,
        "site_id": conversation.site_id,
        "visitor_id": conversation.visitor_id,
        "agent_id": conversation.agent_id,
    }


# --- conversations ------------------------------------------------------------


class ConversationCreated(ConversationEvent, kw_only=True):
    """A visitor's first message opened a conversation (it is queued or, with an agent
    free, assigned in the same transaction: `ConversationAssigned` follows)."""


class ConversationAssigned(ConversationEvent, kw_only=True):
    """An agent (`agent_id`) took a conversation: routing, or a transfer to a named
    agent. `conversation` is the agent's copy (`selectors.agent_conversation_dict` with
    the whole history and notes), `agent` the agent as visitors see it."""

    agent: dict[str, Any]
    conversation: dict[str, Any]


class ConversationTransferred(ConversationEvent, kw_only=True):
    """An agent handed a conversation on: to `to_agent` (as visitors see it), or back to
    the queue (None)."""

    from_agent_id: int
    to_agent: dict[str, Any] | None


class ConversationRequeued(ConversationEvent, kw_only=True):
    """An active conversation went back to the front of the queue because its agent
    was lost (heartbeat lapsed) or removed."""

    former_agent_id: int


class ConversationClosed(ConversationEvent, kw_only=True):
    by: str  # SenderKind: visitor, agent or system


class RatingGiven(ConversationEvent, kw_only=True):
    """The visitor's CSAT score (1-5) of a conversation, with its comment."""

    score: int
    comment: str


class BotHandedOff(ConversationEvent, kw_only=True):
    """A chat the bot had went to people: the visitor asked (`by="visitor"`) or the bot
    gave up (`by="bot"`: no confident answer, or too slow). It is routed as a new chat."""

    by: str


class BotAnswerRated(ConversationEvent, kw_only=True):
    """The visitor found the bot's answer `seq` helpful or not. Emitted inside the
    transaction that checked it, for in-transaction subscribers that store it."""

    seq: int
    message_id: int
    helpful: bool


# --- messages -------------------------------------------------------------------


class MessageCreated(ConversationEvent, kw_only=True):
    """A message was stored. `message` is the message object as the wire shows it;
    `origin` is the socket that sent it (it gets the ack, not the message); `channel`
    the conversation's (`Conversation.Channel`: only an email conversation's replies
    concern the mail sender); `with_bot` whether the bot had the conversation when the
    message was stored (only then may the bot answer it)."""

    message: dict[str, Any]
    origin: str | None = None
    channel: str
    with_bot: bool = False


class NoteCreated(Event):
    """An internal note: for agents only, never the visitor."""

    note: dict[str, Any]
    agent_id: int


class TypingChanged(ConversationEvent, kw_only=True):
    """One side started or stopped typing; `text` is a visitor's unsent draft (sneak
    peek), relayed to the agent and never stored."""

    by: str  # "visitor" or "agent"
    active: bool
    text: str | None = None


class ReadUpTo(ConversationEvent, kw_only=True):
    """One side has read the conversation up to `seq`."""

    by: str  # "visitor" or "agent"
    seq: int
    origin: str | None = None


# --- calls (signaling only: chat/conversations/calls.py) -------------------------


class CallInvited(ConversationEvent, kw_only=True):
    """An agent (`agent_id`) rings the visitor; `agent` as visitors see it, and the ICE
    servers (with their TURN credentials) both browsers connect through."""

    call_id: int
    media: str
    agent: dict[str, Any]
    ice_servers: list[dict[str, Any]]


class CallAccepted(ConversationEvent, kw_only=True):
    call_id: int


class CallEnded(ConversationEvent, kw_only=True):
    call_id: int
    reason: str  # Call.Reason


class CallSignalled(ConversationEvent, kw_only=True):
    """One participant's signal (SDP or ICE candidate) for the other's call tab: `to`
    is that side ("visitor" or "agent"), `to_channel` its socket. Relayed, never stored."""

    call_id: int
    to: str
    to_channel: str
    data: dict[str, Any]


# --- the queue ------------------------------------------------------------------


class QueueChanged(Event):
    """Someone joined, left or moved in a site's queue: positions from
    `from_conversation` back (the whole queue for None) need telling. A reading of the
    queue (`conversations.queue.read_queue`) answers it; several changes may share one."""

    site_id: int
    from_conversation: int | None = None


class QueueRead(Event):
    """One reading of a site's queue: `positions` are (conversation id, visitor id,
    position, estimated wait seconds or None) of the visitors to tell, `length` the
    whole queue's. `version` orders readings (clients keep the highest)."""

    site_id: int
    version: int
    length: int
    positions: list[tuple[int, int, int, int | None]]


# --- agents and visitors -------------------------------------------------------


class PresenceChanged(Event):
    """An agent became available or away: by choice, or automatically (`auto`) by
    idleness or by activity after an automatic away."""

    agent_id: int
    status: str
    auto: bool = False
    origin: str | None = None


class AgentsOnlineChanged(Event):
    """Whether a site has an agent who can take a chat changed (the widget's "agents
    online" or the offline form)."""

    site_id: int
    online: bool


class AgentDeactivated(Event):
    """The agent's login was switched off: its sockets must close now."""

    agent_id: int


class VisitorTokenRotated(Event):
    """The visitor has a new token: sockets that said hello with the old one close."""

    visitor_id: int


class VisitorMoved(Event):
    """The visitor became another device of a verified user: its token now stands for
    the user's record, so its sockets reconnect (same token) as that visitor."""

    visitor_id: int


class VisitorContextChanged(ConversationEvent, kw_only=True):
    """What the widget reports about the visitor changed while its chat is active."""

    context: dict[str, Any]


class CannedResponsesChanged(Event):
    """An agent's own canned responses changed, or (owner None) the shared ones."""

    owner_id: int | None


# --- the registry ---------------------------------------------------------------

Subscriber = Callable[[Any], None]
_after_commit: dict[type[Event], list[Subscriber]] = defaultdict(list)
_in_transaction: dict[type[Event], list[Subscriber]] = defaultdict(list)


def subscribe(event_type: type[Event], handler: Subscriber, *, in_transaction: bool = False):
    """Call `handler(event)` for every `event_type` emitted from now on; subscribing the
    same handler twice has no effect (apps' `ready()` may run twice in tests)."""
    handlers = (_in_transaction if in_transaction else _after_commit)[event_type]
    if handler not in handlers:
        handlers.append(handler)


def unsubscribe(event_type: type[Event], handler: Subscriber) -> None:
    for registry in (_after_commit, _in_transaction):
        if handler in registry[event_type]:
            registry[event_type].remove(handler)


def emit_on_commit(event: Event) -> None:
    """Announce `event`: in-transaction subscribers now, the others once the current
    transaction commits (at once outside one)."""
    for handler in _in_transaction.get(type(event), ()):
        handler(event)
    if _after_commit.get(type(event)):
        transaction.on_commit(functools.partial(_deliver, event))


def emit_committed(event: Event) -> None:
    """Announce a change that has already committed: a statement run in autocommit on
    the event loop (the everyday send). Never with in-transaction subscribers for its
    type: there is no transaction left to join (`has_in_transaction_subscribers`)."""
    _deliver(event)


def has_in_transaction_subscribers(event_type: type[Event]) -> bool:
    """Whether a change announcing `event_type` must be made inside a transaction of
    ours (so the one-statement send paths step aside)."""
    return bool(_in_transaction.get(event_type))


def _deliver(event: Event) -> None:
    for handler in _after_commit.get(type(event), ()):
        try:
            handler(event)
        except Exception:
            # The change stands; one subscriber's failure must not keep the others
            # from hearing of it (clients recover what they missed by seq).
            logger.exception("subscriber %r failed on %r", handler, type(event).__name__)
