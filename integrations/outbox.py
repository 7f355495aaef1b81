"""From the core's kept events to webhook deliveries: each `DurableEvent` becomes one
`WebhookDelivery` per enabled endpoint of its site that hears its type, with the body
every attempt will send, and is then deleted, in one transaction.

One dispatcher at a time (an advisory lock on PostgreSQL, the write lock on SQLite), so
deliveries are made in the order their events committed; a dispatcher that finds the
lock taken leaves the work to its holder.
"""

import json

from django.db import connection, transaction

from chat import selectors
from chat.models import Conversation, DurableEvent, Message

from .models import WebhookDelivery, WebhookEndpoint
from .shapes import conversation_record, stamp

# Any constant: names the advisory lock of the dispatcher.
DISPATCH_LOCK = 0x5EB0


def dispatch(*, limit: int = 200) -> int:
    """Turn up to `limit` kept events into deliveries; returns how many events it took."""
    with transaction.atomic():
        if not _dispatcher_turn():
            return 0
        events = list(DurableEvent.objects.order_by("id")[:limit])
        if not events:
            return 0
        endpoints: dict[int, list[WebhookEndpoint]] = {}
        for endpoint in WebhookEndpoint.objects.filter(
            site_id__in={e.site_id for e in events}, enabled=True
        ):
            endpoints.setdefault(endpoint.site_id, []).append(endpoint)
        bodies = _bodies(events)
        WebhookDelivery.objects.bulk_create(
            WebhookDelivery(
                endpoint=endpoint,
                event_id=event.pk,
                type=event.type,
                conversation_id=event.conversation_id,
                body=bodies[event.pk],
                next_attempt_at=event.created_at,
            )
            for event in events
            if event.pk in bodies
            for endpoint in endpoints.get(event.site_id, ())
            if endpoint.hears(event.type)
        )
        DurableEvent.objects.filter(pk__in=[e.pk for e in events]).delete()
    return len(events)


def _dispatcher_turn() -> bool:
    if connection.vendor != "postgresql":
        return True  # the IMMEDIATE transaction holds the database's write lock
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [DISPATCH_LOCK])
        return cursor.fetchone()[0]


def _bodies(events: list[DurableEvent]) -> dict[int, str]:
    """Each event's delivery body: `{"type", "timestamp", "data"}` (Standard Webhooks),
    as JSON text; none for a message deleted meanwhile."""
    conversations = Conversation.objects.select_related("visitor", "agent").in_bulk(
        {e.conversation_id for e in events if e.conversation_id}
    )
    messages = Message.objects.select_related("attachment", "sender_agent").in_bulk(
        {e.message_id for e in events if e.message_id}
    )
    bodies = {}
    for event in events:
        if event.type == "message.created":
            if event.message_id not in messages:
                continue  # deleted (a purge, an erasure) since: nothing to tell
            data = selectors.message_dict(messages[event.message_id])
        else:
            conversation = conversations.get(event.conversation_id)
            data = {
                "conversation": conversation_record(conversation) if conversation else None,
                **(event.payload or {}),
            }
        bodies[event.pk] = json.dumps(
            {"type": event.type, "timestamp": stamp(event.created_at), "data": data},
            ensure_ascii=False,
            separators=(",", ":"),
        )
    return bodies
