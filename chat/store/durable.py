"""Domain events kept for subscribers that must not miss one across a worker, Redis or
database restart (the webhooks): a `DurableEvent` row written in the same transaction as
the change it announces, only for the sites and types an `EventInterest` names.

The message send's one statement writes its row itself (`MESSAGE_SQL`, in the same
statement); the other events are recorded by `record`, an in-transaction subscriber of
chat/events.py (connected in ChatConfig.ready).
"""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from .. import events
from ..models import DurableEvent, EventInterest

# The public names of the events kept, as webhooks name them.
NAMES: dict[type[events.Event], str] = {
    events.ConversationCreated: "conversation.created",
    events.ConversationAssigned: "conversation.assigned",
    events.ConversationClosed: "conversation.closed",
    events.MessageCreated: "message.created",
    events.RatingGiven: "csat.submitted",
}
TYPES = tuple(NAMES.values())

DURABLE_TABLE = DurableEvent._meta.db_table
INTEREST_TABLE = EventInterest._meta.db_table

# Appended to a statement that stored a message: the event row, only where the site asked
# for it (`c`: the conversation's row as the UPDATE returned it, `m`: the message's).
MESSAGE_SQL = (
    f"INSERT INTO {DURABLE_TABLE} (site_id, type, conversation_id, message_id, payload,"
    " created_at) SELECT c.site_id, 'message.created', c.id, m.id, NULL, %s FROM c, m"
    f" WHERE EXISTS (SELECT 1 FROM {INTEREST_TABLE} i WHERE i.site_id = c.site_id"
    " AND i.type = 'message.created')"
)


def record(event: events.ConversationEvent) -> None:
    """Keep `event` if its site asked for its type (inside the cause's transaction)."""
    name = NAMES[type(event)]
    if EventInterest.objects.filter(site_id=event.site_id, type=name).exists():
        DurableEvent.objects.create(
            site_id=event.site_id,
            type=name,
            conversation_id=event.conversation_id,
            payload=_payload(event),
            created_at=event.at or timezone.now(),
        )


def record_message(*, site_id: int, conversation_id: int, message_id: int, now: datetime) -> None:
    """Keep a message stored by the full path (inside its transaction)."""
    if EventInterest.objects.filter(site_id=site_id, type="message.created").exists():
        DurableEvent.objects.create(
            site_id=site_id,
            type="message.created",
            conversation_id=conversation_id,
            message_id=message_id,
            created_at=now,
        )


def _payload(event: events.ConversationEvent) -> dict:
    """What an event said beyond its conversation (the subscriber reads the rest)."""
    if isinstance(event, events.ConversationAssigned):
        return {"agent": {"id": event.agent_id, **event.agent}}
    if isinstance(event, events.ConversationClosed):
        return {"by": event.by}
    if isinstance(event, events.RatingGiven):
        return {"score": event.score, "comment": event.comment}
    return {}


def set_interest(site_id: int, types: set[str]) -> None:
    """From now on keep exactly these types of the site's events (the webhook endpoints
    of the site changed)."""
    unknown = set(types) - set(TYPES)
    if unknown:
        raise ValueError(f"no such events: {sorted(unknown)}")
    with transaction.atomic():
        EventInterest.objects.filter(site_id=site_id).exclude(type__in=types).delete()
        for name in sorted(types):
            EventInterest.objects.get_or_create(site_id=site_id, type=name)


def connect() -> None:
    for event_type in NAMES:
        if event_type is not events.MessageCreated:  # its statement writes its own row
            events.subscribe(event_type, record, in_transaction=True)
