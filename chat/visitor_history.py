"""Reads: a visitor's past as an agent may see it (`visitor.profile`, and an earlier
conversation read only through `conversation.history`)."""

from django.db.models import Exists, OuterRef

from agents.models import AgentProfile

from .errors import NotFound
from .models import Conversation, Visitor
from .protocol import outbound
from .selectors import (
    conversation_for_agent,
    first_visitor_message,
    messages_after,
    snippet,
    visitor_context_dict,
)

# How many of a visitor's earlier conversations `visitor.profile` lists (the count is
# of all of them).
PREVIOUS_SHOWN = 5


def previous_conversations(conversation: Conversation) -> dict:
    """The same visitor's conversations before this one: how many, and the latest few
    (newest first) with their first visitor message cut short. Two queries."""
    earlier = Conversation.objects.filter(
        visitor_id=conversation.visitor_id, pk__lt=conversation.pk
    )
    rows = (
        earlier.annotate(first_message=first_visitor_message())
        .order_by("-created_at", "-id")
        .values("id", "status", "channel", "created_at", "closed_at", "first_message")[
            :PREVIOUS_SHOWN
        ]
    )
    shown = [
        {
            "id": row["id"],
            "status": row["status"],
            "channel": row["channel"],
            "created_at": row["created_at"].isoformat(),
            "closed_at": row["closed_at"].isoformat() if row["closed_at"] else None,
            "first_message": snippet(row["first_message"]),
        }
        for row in rows
    ]
    count = len(shown) if len(shown) < PREVIOUS_SHOWN else earlier.count()
    return {"count": count, "conversations": shown}


def visitor_profile(agent_id: int, conversation_id: int) -> dict:
    """The `visitor.profile` answer for a conversation this agent may read: the
    visitor's context and earlier conversations."""
    conversation = conversation_for_agent(agent_id, conversation_id, read_only=True)
    visitor = Visitor.objects.get(pk=conversation.visitor_id)
    return outbound.visitor_profile(
        conversation=conversation.id,
        visitor=visitor.id,
        context=visitor_context_dict(visitor),
        previous=previous_conversations(conversation),
    )


def earlier_conversation_for_agent(agent_id: int, conversation_id: int) -> Conversation:
    """A conversation this agent may read as a visitor's history: one of a site the
    agent serves now (an agent without sites serves every site), whose visitor has
    had a conversation assigned to this agent. Else `NotFound`, the same answer whether
    it exists or not: an agent reads the past of the visitors they serve, never browses
    a site's (or another site's) transcripts by id. One query."""
    agent = AgentProfile.objects.filter(pk=agent_id, user__is_active=True)
    serves_site = Exists(agent.filter(sites__isnull=True)) | Exists(
        agent.filter(sites=OuterRef("site_id"))
    )
    served_visitor = Exists(
        Conversation.objects.filter(visitor_id=OuterRef("visitor_id"), agent_id=agent_id)
    )
    conversation = Conversation.objects.filter(
        serves_site, served_visitor, pk=conversation_id
    ).first()
    if conversation is None:
        raise NotFound
    return conversation


def conversation_history(agent_id: int, conversation_id: int) -> dict:
    """The `conversation.history` answer: an earlier conversation of a visitor, read
    only, messages only (its internal notes stay with the agents who wrote them)."""
    conversation = earlier_conversation_for_agent(agent_id, conversation_id)
    return outbound.conversation_history(
        conversation=conversation.id,
        visitor=conversation.visitor_id,
        status=conversation.status,
        channel=conversation.channel,
        created_at=conversation.created_at.isoformat(),
        closed_at=conversation.closed_at.isoformat() if conversation.closed_at else None,
        messages=messages_after(conversation.id, 0),
    )
