"""Conversations, visitors and agents as other systems see them: the REST API's
responses and the webhooks' data are the same shapes."""

from chat.models import Conversation, Visitor


def stamp(value) -> str | None:
    return value.isoformat() if value else None


def visitor_record(visitor: Visitor) -> dict:
    return {
        "id": visitor.pk,
        "site": visitor.site_id,
        "name": visitor.name or None,
        "email": visitor.email or None,
        "attributes": visitor.attributes,
        "first_seen": stamp(visitor.first_seen),
        "last_seen": stamp(visitor.last_seen),
    }


def conversation_record(conversation: Conversation) -> dict:
    """Load with select_related("visitor", "agent")."""
    agent = conversation.agent
    visitor = conversation.visitor
    return {
        "id": conversation.pk,
        "site": conversation.site_id,
        "status": conversation.status,
        "visitor": {
            "id": visitor.pk,
            "name": visitor.name or None,
            "email": visitor.email or None,
        },
        "agent": {"id": agent.pk, "display_name": agent.display_name} if agent else None,
        "created_at": stamp(conversation.created_at),
        "assigned_at": stamp(conversation.assigned_at),
        "closed_at": stamp(conversation.closed_at),
        "closed_by": conversation.closed_by or None,
        "last_seq": conversation.last_seq,
        "last_activity_at": stamp(conversation.last_activity_at),
    }
