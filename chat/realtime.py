"""Who hears about what: group names, event types, and the one caller of `group_send`.

The channel layer is a doorbell, not the record: every frame sent from here is sent
only after the transaction that justifies it committed, and a socket that misses one
recovers from the database by `seq`.
"""

import contextvars
import logging
import weakref
from collections.abc import Iterable
from typing import Any, Protocol

import redis.exceptions
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

# Channel-layer event types; consumers have one handler per type.
FRAME_EVENT = "chat.frame"  # forward `frame` to the client, except to `skip_channel`
QUEUE_EVENT = "chat.queue"  # a site's queue length changed; agents filter by their sites
AGENT_GONE_EVENT = "chat.agent_gone"  # the agent was deactivated: close its sockets
TOKEN_ROTATED_EVENT = "chat.token_rotated"  # the visitor has a new token: close old sockets
# An agent's canned responses changed (own: that agent's group; shared: AGENTS_GROUP):
# each socket reads its list afresh and sends it (agents/services.py).
CANNED_CHANGED_EVENT = "chat.canned_changed"

AGENTS_GROUP = "agents"


def visitor_group(visitor_id: int) -> str:
    """Every socket of one visitor. Recipients are chosen by id from committed rows,
    never from a client's claim, so a frame reaches only that visitor's tabs."""
    return f"visitor.{visitor_id}"


def agent_group(agent_id: int) -> str:
    """Every socket of one agent."""
    return f"agent.{agent_id}"


def site_visitors_group(site_id: int) -> str:
    """Every visitor socket of one site, for what all of them may see alike (whether
    agents are online). Never anything about one visitor's conversation."""
    return f"site.{site_id}.visitors"


# While a consumer runs a service, broadcasts are collected here and sent by the
# consumer on the event loop after the service returns, instead of blocking the
# single database thread on Redis round trips.
_outbox: contextvars.ContextVar[list | None] = contextvars.ContextVar("outbox", default=None)


def broadcast_on_commit(groups: Iterable[str], event: dict[str, Any]) -> None:
    """Send `event` to each group once the current transaction commits (at once outside one)."""
    groups = tuple(groups)
    transaction.on_commit(lambda: broadcast_committed(groups, event))


def broadcast_committed(groups: Iterable[str], event: dict[str, Any]) -> None:
    """Send `event` to each group, for a change that has already committed (a statement
    run in autocommit on the event loop: `services.post_message_on_loop`). There, only
    inside an `Outbox`, which its caller flushes."""
    groups = tuple(groups)
    outbox = _outbox.get()
    if outbox is not None:
        outbox.extend((group, event) for group in groups)
    else:
        _send_now(groups, event)


def frame_event(frame: dict[str, Any], *, skip_channel: str | None = None) -> dict[str, Any]:
    return {"type": FRAME_EVENT, "frame": frame, "skip_channel": skip_channel}


def _send_now(groups: tuple[str, ...], event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    for group in groups:
        try:
            async_to_sync(layer.group_send)(group, event)
        except Exception:
            # The commit stands; clients recover what they missed by seq.
            logger.exception("group_send to %s failed", group)


class Outbox:
    """Collects the broadcasts of one service call made from async code."""

    def __enter__(self) -> list:
        self.events: list = []
        self._token = _outbox.set(self.events)
        return self.events

    def __exit__(self, *exc_info: object) -> None:
        _outbox.reset(self._token)


async def flush(events: list) -> None:
    layer = get_channel_layer()
    send_many = getattr(layer, "group_send_many", None)  # chat.channel_layer: one pipeline
    if send_many is not None and events:
        outcomes = await send_many(events)
    else:
        outcomes = []
        for group, event in events:
            try:
                await layer.group_send(group, event)
            except Exception as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
    for (group, _event), outcome in zip(events, outcomes, strict=True):
        if outcome is not None:
            logger.error("group_send to %s failed", group, exc_info=outcome)


async def ring_again(groups: Iterable[str], message: dict[str, Any], *, skip_channel: str) -> None:
    """Broadcast an already stored message once more (see `ChatConsumer.acknowledge`);
    sockets that have shown its seq drop it."""
    frame = {"type": "message", **message}
    await flush([(group, frame_event(frame, skip_channel=skip_channel)) for group in groups])


# --- when the doorbell itself fails ----------------------------------------------

# What a channel layer raises while Redis cannot be reached.
LAYER_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class Resyncable(Protocol):
    def events_may_be_lost(self) -> None: ...


# Sockets of this worker that joined groups. If the worker's subscription to Redis
# breaks, whatever was published until it is back is lost for all of them, silently:
# Redis pub/sub keeps nothing for an absent subscriber.
_subscribed_sockets: weakref.WeakSet = weakref.WeakSet()


def watch_subscription(socket: Resyncable) -> None:
    _subscribed_sockets.add(socket)


def unwatch_subscription(socket: Resyncable) -> None:
    _subscribed_sockets.discard(socket)


def subscription_restored() -> None:
    """Called by the channel layer (`chat.channel_layer`) once it has subscribed again
    after losing Redis: every socket that was subscribed may have missed events, and
    only the database can tell which, so each is told to start over from it."""
    sockets = list(_subscribed_sockets)
    if sockets:
        logger.warning("channel layer subscription restored: %d sockets must resync", len(sockets))
    for socket in sockets:
        socket.events_may_be_lost()
