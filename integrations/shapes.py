"""Conversations, visitors and agents as other systems see them: the REST API's
responses and the webhooks' data are the same shapes."""

from datetime import datetime

from django.db.models import Count, Q

from agents.models import AgentProfile
from chat import selectors
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
        "user_id": visitor.user_id or None,
        "verified": visitor.verified_at is not None,
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
        "channel": conversation.channel,
        "email": selectors.email_dict(conversation),
        "visitor": {
            "id": visitor.pk,
            "name": visitor.name or None,
            "email": visitor.email or None,
            "verified": visitor.verified_at is not None,
        },
        "agent": {"id": agent.pk, "display_name": agent.display_name} if agent else None,
        "created_at": stamp(conversation.created_at),
        "assigned_at": stamp(conversation.assigned_at),
        "closed_at": stamp(conversation.closed_at),
        "closed_by": conversation.closed_by or None,
        "last_seq": conversation.last_seq,
        "last_activity_at": stamp(conversation.last_activity_at),
    }


def site_agents(site_id: int, now: datetime | None = None) -> list[dict]:
    """The agents (active logins) who serve a site, with whether they can take a chat now
    (`online`: available, a live heartbeat) and their load: the REST API's list."""
    rows = (
        AgentProfile.objects.filter(selectors.serves(site_id), user__is_active=True)
        .annotate(
            load=Count(
                "conversations",
                filter=Q(conversations__status=Conversation.Status.ACTIVE),
                distinct=True,
            )
        )
        .distinct()
        .order_by("display_name", "id")
    )
    cutoff = selectors.heartbeat_cutoff(now)
    return [
        {
            "id": agent.id,
            "display_name": agent.display_name,
            "status": agent.status,
            "online": agent.status == AgentProfile.Status.AVAILABLE
            and agent.last_heartbeat is not None
            and agent.last_heartbeat >= cutoff,
            "load": agent.load,
            "capacity": agent.capacity,
        }
        for agent in rows
    ]
