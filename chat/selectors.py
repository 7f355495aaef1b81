"""Reads: access checks and the shapes the wire contract shows (one job per function)."""

from datetime import datetime

from django.conf import settings
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from agents.models import AgentProfile

from .models import (
    Conversation,
    ConversationRating,
    Message,
    Note,
    Site,
    Visitor,
    hash_token,
)

Status = Conversation.Status


class NotFound(Exception):
    """The thing does not exist or is not yours: the caller cannot tell which."""


class SiteDisabled(Exception):
    pass


def message_dict(message: Message) -> dict:
    return {
        "conversation": message.conversation_id,
        "seq": message.seq,
        "sender": message.sender,
        "body": message.body,
        "client_msg_id": message.client_msg_id,
        "sent_at": message.created_at.isoformat(),
    }


def messages_after(conversation_id: int, after_seq: int) -> list[dict]:
    rows = Message.objects.filter(conversation_id=conversation_id, seq__gt=after_seq).order_by(
        "seq"
    )
    return [message_dict(m) for m in rows]


def note_dict(note: Note) -> dict:
    """An internal note as agents see it; never part of anything sent to a visitor."""
    return {
        "conversation": note.conversation_id,
        "id": note.id,
        "after_seq": note.after_seq,
        "author": note.author.display_name if note.author else None,
        "body": note.body,
        "client_msg_id": note.client_msg_id,
        "sent_at": note.created_at.isoformat(),
    }


def notes_of(conversation_id: int) -> list[dict]:
    rows = Note.objects.filter(conversation_id=conversation_id).select_related("author")
    return [note_dict(n) for n in rows.order_by("id")]


def messages_between(conversation_id: int, after_seq: int, before_seq: int) -> list[dict]:
    """The messages strictly between two seqs, in order (a socket's gap to fill)."""
    rows = Message.objects.filter(
        conversation_id=conversation_id, seq__gt=after_seq, seq__lt=before_seq
    ).order_by("seq")
    return [message_dict(m) for m in rows]


def enabled_site(site_key: str) -> Site:
    """The site for a key; `NotFound` if unknown, `SiteDisabled` if switched off."""
    site = Site.objects.filter(key=site_key).first()
    if site is None:
        raise NotFound
    if not site.enabled:
        raise SiteDisabled
    return site


def visitor_for_token(site: Site, token: str) -> Visitor:
    """The visitor a token was issued to, for this site only (a token from site A is
    refused on site B)."""
    visitor = Visitor.objects.filter(token_hash=hash_token(token), site=site).first()
    if visitor is None:
        raise NotFound
    return visitor


def open_conversation(visitor_id: int) -> Conversation | None:
    return Conversation.objects.filter(
        visitor_id=visitor_id, status__in=Conversation.OPEN_STATUSES
    ).first()


def latest_conversation(visitor_id: int) -> Conversation | None:
    return (
        Conversation.objects.filter(visitor_id=visitor_id)
        .select_related("agent")
        .order_by("-created_at", "-id")
        .first()
    )


def conversation_for_agent(
    agent_id: int, conversation_id: int, *, read_only: bool = False
) -> Conversation:
    """A conversation this agent may act on: one assigned to them (open or closed).
    With `read_only` (reading, never writing), a supervisor may also have any
    conversation of the sites they serve. Else `NotFound`: the same answer whether it
    exists or not, so ids cannot be probed.

    The one access check for an agent naming a conversation; one query either way."""
    allowed = Q(agent_id=agent_id)
    if read_only:
        supervisor = AgentProfile.objects.filter(
            pk=agent_id, is_supervisor=True, user__is_active=True
        )
        allowed |= Exists(supervisor.filter(sites__isnull=True)) | Exists(
            supervisor.filter(sites=OuterRef("site_id"))
        )
    conversation = Conversation.objects.filter(allowed, pk=conversation_id).first()
    if conversation is None:
        raise NotFound
    return conversation


def queue_position(conversation: Conversation) -> int:
    """1 + conversations of the same site ahead of this one in the queue."""
    ahead = Conversation.objects.filter(site_id=conversation.site_id, status=Status.QUEUED).filter(
        Q(queue_priority__gt=conversation.queue_priority)
        | Q(queue_priority=conversation.queue_priority, queued_at__lt=conversation.queued_at)
        | Q(
            queue_priority=conversation.queue_priority,
            queued_at=conversation.queued_at,
            id__lt=conversation.id,
        )
    )
    return ahead.count() + 1


def queue_order(queryset: QuerySet) -> QuerySet:
    return queryset.order_by("-queue_priority", "queued_at", "id")


def queued_positions(site_id: int) -> list[tuple[int, int, int]]:
    """(conversation id, visitor id, position) for a site's whole queue, in order."""
    rows = queue_order(
        Conversation.objects.filter(site_id=site_id, status=Status.QUEUED)
    ).values_list("id", "visitor_id")
    return [(conv_id, visitor_id, n) for n, (conv_id, visitor_id) in enumerate(rows, start=1)]


def queue_lengths() -> dict[int, int]:
    """Queued conversations per site id."""
    rows = (
        Conversation.objects.filter(status=Status.QUEUED)
        .values("site_id")
        .annotate(n=Count("id"))
        .values_list("site_id", "n")
    )
    return dict(rows)


def agent_site_ids(agent_id: int) -> frozenset[int] | None:
    """The sites an agent serves; None means every site."""
    ids = frozenset(
        AgentProfile.sites.through.objects.filter(agentprofile_id=agent_id).values_list(
            "site_id", flat=True
        )
    )
    return ids or None


def heartbeat_cutoff(now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    return now - timezone.timedelta(seconds=settings.SUPPORTDESK_HEARTBEAT_TIMEOUT)


def routable_agents(site_id: int, now: datetime | None = None) -> QuerySet:
    """Agents who may take a new chat of this site now: available, with a fresh
    heartbeat, active login, serving the site, below capacity; least loaded first,
    then the one idle longest."""
    return (
        AgentProfile.objects.filter(
            status=AgentProfile.Status.AVAILABLE,
            last_heartbeat__gte=heartbeat_cutoff(now),
            user__is_active=True,
        )
        .filter(Q(sites__isnull=True) | Q(sites=site_id))
        .annotate(load=Count("conversations", filter=Q(conversations__status=Status.ACTIVE)))
        .filter(load__lt=F("capacity"))
        .order_by("load", F("last_assigned_at").asc(nulls_first=True), "id")
    )


def colleagues(agent_id: int, now: datetime | None = None) -> list[dict]:
    """Other agents (active logins) sharing a site with this one, for a transfer:
    `available` means one could take a chat right now (present and below capacity)."""
    sites = agent_site_ids(agent_id)
    rows = AgentProfile.objects.filter(user__is_active=True).exclude(pk=agent_id)
    if sites is not None:
        rows = rows.filter(Q(sites__isnull=True) | Q(sites__in=sites)).distinct()
    rows = rows.annotate(
        load=Count("conversations", filter=Q(conversations__status=Status.ACTIVE), distinct=True)
    ).order_by("display_name", "id")
    cutoff = heartbeat_cutoff(now)
    return [
        {
            "id": agent.id,
            "display_name": agent.display_name,
            "status": agent.status,
            "online": agent.last_heartbeat is not None and agent.last_heartbeat >= cutoff,
            "load": agent.load,
            "capacity": agent.capacity,
        }
        for agent in rows
    ]


def agents_online(site_id: int, now: datetime | None = None) -> bool:
    """Whether any agent serving the site is present (available, fresh heartbeat,
    active login), busy or not: if none is, the widget offers the offline form."""
    return (
        AgentProfile.objects.filter(
            status=AgentProfile.Status.AVAILABLE,
            last_heartbeat__gte=heartbeat_cutoff(now),
            user__is_active=True,
        )
        .filter(Q(sites__isnull=True) | Q(sites=site_id))
        .exists()
    )


def site_agent_emails(site_id: int) -> list[str]:
    """Email addresses of the active agents serving a site."""
    rows = (
        AgentProfile.objects.filter(user__is_active=True)
        .filter(Q(sites__isnull=True) | Q(sites=site_id))
        .exclude(user__email="")
        .values_list("user__email", flat=True)
        .distinct()
    )
    return sorted(set(rows))


def active_load(agent_id: int) -> int:
    return Conversation.objects.filter(agent_id=agent_id, status=Status.ACTIVE).count()


def agent_conversation_dict(conversation: Conversation, *, with_messages: bool = False) -> dict:
    data = {
        "id": conversation.id,
        "status": conversation.status,
        "visitor": {"id": conversation.visitor_id},
        "last_seq": conversation.last_seq,
        "unread": conversation.agent_unread,
        "read_seq": conversation.agent_read_seq,
        "visitor_read_seq": conversation.visitor_read_seq,
        "site": conversation.site_id,
    }
    if with_messages:
        data["messages"] = messages_after(conversation.id, 0)
        data["notes"] = notes_of(conversation.id)
    return data


def visitor_conversation_dict(conversation: Conversation) -> dict:
    agent = conversation.agent if conversation.status == Status.ACTIVE else None
    return {
        "id": conversation.id,
        "status": conversation.status,
        "queue_position": queue_position(conversation)
        if conversation.status == Status.QUEUED
        else None,
        "agent": agent.public_dict() if agent else None,
        "last_seq": conversation.last_seq,
        "agent_read_seq": conversation.agent_read_seq,
    }


def visitor_ready(visitor: Visitor, last_seq: int) -> dict:
    conversation = latest_conversation(visitor.id)
    if conversation is None:
        return {
            "type": "ready",
            "visitor": {"id": visitor.id},
            "conversation": None,
            "messages": [],
            "agents_online": agents_online(visitor.site_id),
        }
    summary = visitor_conversation_dict(conversation)
    # (addition) The visitor's CSAT score of it, or null: the widget offers rating once.
    summary["rating"] = (
        ConversationRating.objects.filter(conversation_id=conversation.id)
        .values_list("score", flat=True)
        .first()
    )
    messages = messages_after(conversation.id, last_seq)
    # A message may commit between the two reads: last_seq covers what is sent.
    if messages:
        summary["last_seq"] = max(summary["last_seq"], messages[-1]["seq"])
    return {
        "type": "ready",
        "visitor": {"id": visitor.id},
        "conversation": summary,
        "messages": messages,
        "agents_online": agents_online(visitor.site_id),
    }


def agent_ready(agent: AgentProfile) -> dict:
    conversations = Conversation.objects.filter(agent_id=agent.id, status=Status.ACTIVE).order_by(
        "assigned_at", "id"
    )
    sites = agent_site_ids(agent.id)
    lengths = queue_lengths()
    return {
        "type": "ready",
        "agent": {
            "id": agent.id,
            "display_name": agent.display_name,
            "status": agent.status,
            "capacity": agent.capacity,
        },
        "conversations": [agent_conversation_dict(c) for c in conversations],
        "queue_length": sum(n for site, n in lengths.items() if sites is None or site in sites),
    }
