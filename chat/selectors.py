"""Reads: access checks and the shapes the wire contract shows (one job per function)."""

import statistics
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Substr
from django.urls import reverse
from django.utils import timezone

from agents.models import AgentProfile

from . import visitor_context
from .errors import NotFound, SiteDisabled
from .models import (
    Assignment,
    Attachment,
    Conversation,
    Message,
    Note,
    SenderKind,
    Site,
    Visitor,
    hash_token,
)
from .store import sql

Status = Conversation.Status


def message_wire(
    *,
    conversation: int,
    seq: int,
    sender: str,
    body: str,
    client_msg_id: str | None,
    sent_at: datetime,
    agent: dict | None = None,
    sources: list | None = None,
) -> dict:
    """A message without a file as the wire carries it (docs/protocol.md), from its
    values: the send path has them without loading a `Message`. An agent's message also
    names its author (v1.1): `agent`, from `author`; a bot's, the articles it answered
    from (v1.1): `sources`, always a list."""
    wire = {
        "conversation": conversation,
        "seq": seq,
        "sender": sender,
        "body": body,
        "client_msg_id": client_msg_id,
        "sent_at": sent_at.isoformat(),
    }
    if sender == SenderKind.AGENT:
        wire["agent"] = agent
    elif sender == SenderKind.BOT:
        wire["sources"] = sources or []
    return wire


def author(agent_id: int | None, display_name: str | None) -> dict | None:
    """The agent who wrote a message as the wire names it; None once the agent's profile
    is gone (the message keeps `sender: "agent"`)."""
    if agent_id is None or display_name is None:
        return None
    return {"id": agent_id, "display_name": display_name}


def message_dict(message: Message) -> dict:
    """A stored message as the wire carries it. Its author comes from the `author_name`
    the raw queries and the send path set, else from `select_related("sender_agent")`:
    never a query per message."""
    if message.sender != SenderKind.AGENT:
        agent = None
    elif hasattr(message, "author_name"):
        agent = author(message.sender_agent_id, message.author_name)
    else:
        profile = message.sender_agent
        agent = author(message.sender_agent_id, profile.display_name if profile else None)
    wire = message_wire(
        conversation=message.conversation_id,
        seq=message.seq,
        sender=message.sender,
        body=message.body,
        client_msg_id=message.client_msg_id,
        sent_at=message.created_at,
        agent=agent,
        sources=message.sources,
    )
    if message.system_code:  # (addition) a system message's code and its parameters
        wire.update(code=message.system_code, params=message.system_params or {})
    # (addition) Only messages with a file carry `attachment`.
    attachment = loaded_attachment(message)
    if attachment is not None:
        wire["attachment"] = attachment_dict(attachment)
    return wire


def loaded_attachment(message: Message) -> Attachment | None:
    """The message's attachment if it was loaded with it (`select_related("attachment")`,
    or set by `conversations.messages.append_message`), else None: turning a message into
    its wire shape never costs a query, so a plain message's hot path stays as it was."""
    relation = Message.attachment.related
    return relation.get_cached_value(message) if relation.is_cached(message) else None


def attachment_dict(attachment: Attachment) -> dict:
    """An attachment as participants see it. The URLs answer only participants
    (chat/attachment_views.py); the visitor's widget sends its token with them."""
    return {
        "id": attachment.id,
        "name": attachment.name,
        "size": attachment.size,
        "content_type": attachment.content_type,
        "url": reverse("attachment", args=[attachment.id]),
        "thumbnail_url": reverse("attachment-thumbnail", args=[attachment.id])
        if attachment.thumbnail
        else None,
    }


def messages_after(conversation_id: int, after_seq: int) -> list[dict]:
    rows = (
        Message.objects.filter(conversation_id=conversation_id, seq__gt=after_seq)
        .select_related("attachment", "sender_agent")
        .order_by("seq")
    )
    return [message_dict(m) for m in rows]


def messages_without_attachments(conversation_id: int) -> list[dict] | None:
    """Every message of a conversation as `messages_after(conversation_id, 0)` shows
    them, in one plain SQL query; None if one has an attachment (`messages_after`
    shows those). Routing hands every new chat's history to its agent, hundreds a
    second in a burst, and a new chat's history is one message."""
    messages = sql.messages_with_attachment_flag(conversation_id)
    if any(message.with_attachment for message in messages):
        return None
    return [message_dict(message) for message in messages]


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
    rows = (
        Message.objects.filter(
            conversation_id=conversation_id, seq__gt=after_seq, seq__lt=before_seq
        )
        .select_related("attachment", "sender_agent")
        .order_by("seq")
    )
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
    visitor = (
        Visitor.objects.filter(token_hash=hash_token(token), site=site)
        .select_related("merged_into")
        .first()
    )
    if visitor is None:
        raise NotFound
    # Another device of a verified user: the token stands for the user's record.
    return visitor.merged_into or visitor


def joins(conversation_id: int) -> list[dict]:
    """Each agent's turn with a conversation as the visitor sees it: who joined, after
    which message (`after_seq`), in order. One query."""
    return joins_of([conversation_id]).get(conversation_id, [])


def joins_of(conversation_ids: list[int]) -> dict[int, list[dict]]:
    """`joins` for several conversations (the agent's `ready`) in one query."""
    turns = Assignment.objects.filter(conversation_id__in=conversation_ids).values_list(
        "conversation_id", "agent__display_name", "after_seq"
    )
    found: dict[int, list[dict]] = {}
    for conversation_id, name, after_seq in turns:
        found.setdefault(conversation_id, []).append(join_dict(name, after_seq))
    return found


def join_dict(display_name: str, after_seq: int) -> dict:
    """One agent's turn as `joins` shows it."""
    return {
        "agent": {"display_name": display_name} if display_name else None,
        "after_seq": after_seq,
    }


def agent_id_for_user(user_id: int) -> int | None:
    """The agent profile behind a login, if it has one."""
    return AgentProfile.objects.filter(user_id=user_id).values_list("id", flat=True).first()


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


def attachment_for_visitor(visitor_id: int, attachment_id: int) -> Attachment:
    """An attachment this visitor may download: one sent in its own conversations, or
    one it uploaded and has not sent yet (an agent's unsent upload stays the agent's).
    Else `NotFound`, the same whether it exists or not."""
    attachment = (
        Attachment.objects.filter(pk=attachment_id, conversation__visitor_id=visitor_id)
        .filter(Q(message__isnull=False) | Q(uploaded_by=SenderKind.VISITOR))
        .first()
    )
    if attachment is None:
        raise NotFound
    return attachment


def attachment_for_agent(agent_id: int, attachment_id: int) -> Attachment:
    """An attachment this agent may download: one sent in a conversation the agent may
    read (`conversation_for_agent(read_only=True)`: their own, or as a supervisor), or
    one they uploaded and have not sent yet. Else `NotFound`."""
    attachment = Attachment.objects.filter(pk=attachment_id).first()
    if attachment is None:
        raise NotFound
    if attachment.message_id is None:
        if attachment.uploaded_by_agent_id != agent_id:
            raise NotFound
        return attachment
    conversation_for_agent(agent_id, attachment.conversation_id, read_only=True)
    return attachment


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


def queued_positions(site_id: int) -> list[tuple[int, int, int]]:
    """(conversation id, visitor id, position) for a site's whole queue, in order.
    Plain SQL: every queue change reads it."""
    rows = sql.queued_conversations(site_id)
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


def serves(site_id: int) -> Q:
    """Agent profiles serving a site: those listed for it, and those listed for no site
    (who serve every site). Filtering on it joins the sites: add `.distinct()` where a
    row per agent matters."""
    return Q(sites__isnull=True) | Q(sites=site_id)


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
        .filter(serves(site_id))
        .annotate(load=Count("conversations", filter=Q(conversations__status=Status.ACTIVE)))
        .filter(load__lt=F("capacity"))
        .order_by("load", F("last_assigned_at").asc(nulls_first=True), "id")
    )


def present_agent_loads(site_id: int, now: datetime | None = None) -> list[tuple[int, int, int]]:
    """(agent id, capacity, active chats) of the agents present for a site
    (`present_agents`), least loaded first, then the one idle longest: the routing
    ranking. Those with load below capacity are `routable_agents`, in its order.
    Plain SQL: routing reads it for every new chat."""
    return sql.present_agent_loads(site_id, heartbeat_cutoff(now))


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


def present_agents(now: datetime | None = None, *, site_id: int | None = None) -> QuerySet:
    """Agents who can be routed chats at all right now (of one site, if given):
    available (not away, by choice or idle), with a live heartbeat, an active login and
    room for at least one chat (capacity 0 is never routed). Busy ones included: they
    free up."""
    agents = AgentProfile.objects.filter(
        status=AgentProfile.Status.AVAILABLE,
        last_heartbeat__gte=heartbeat_cutoff(now),
        user__is_active=True,
        capacity__gt=0,
    )
    return agents if site_id is None else agents.filter(serves(site_id))


def agents_online(site_id: int, now: datetime | None = None) -> bool:
    """Whether a present agent (see `present_agents`) serves the site, busy or not:
    the widget says "agents online" (a chat queues and is answered), else it offers
    the offline form."""
    return present_agents(now, site_id=site_id).exists()


def online_site_ids(now: datetime | None = None) -> frozenset[int]:
    """The enabled sites for which `agents_online` is true, in two queries whatever the
    number of sites (the sweep compares it with what visitors were last told)."""
    served = list(present_agents(now).values_list("sites", flat=True).distinct())
    sites = Site.objects.filter(enabled=True)
    if None not in served:
        sites = sites.filter(pk__in=[site for site in served if site is not None])
    return frozenset(sites.values_list("pk", flat=True))


# --- estimated wait in the queue --------------------------------------------------

# Handling time = assigned_at to closed_at, over the site's latest closed chats.
WAIT_SAMPLE = 50
WAIT_WINDOW = timezone.timedelta(hours=24)


@dataclass(frozen=True)
class WaitBasis:
    """What a site's wait estimates divide: how long a chat takes (the median of the
    site's chats closed in the last 24 h, else the site's `typical_chat_minutes`) and the
    slots of the agents who can take its chats now."""

    chat_seconds: float
    slots: int

    def estimate(self, position: int) -> int | None:
        """About how long the conversation at `position` will wait: a chat's length,
        times its position, shared by the slots. None while nobody can take a chat."""
        if self.slots <= 0:
            return None
        return round(self.chat_seconds * position / self.slots)


def wait_basis(site_id: int, now: datetime | None = None) -> WaitBasis:
    """Read once per reading of the queue (two queries, three while the site has no
    recent chat), never once per waiting visitor."""
    now = now or timezone.now()
    rows = (
        Conversation.objects.filter(
            site_id=site_id,
            status=Status.CLOSED,
            assigned_at__isnull=False,
            closed_at__gte=now - WAIT_WINDOW,
        )
        .order_by("-closed_at")
        .values_list("assigned_at", "closed_at")[:WAIT_SAMPLE]
    )
    durations = [(closed - assigned).total_seconds() for assigned, closed in rows]
    durations = [d for d in durations if d >= 0]
    if durations:
        chat_seconds = statistics.median(durations)
    else:
        minutes = Site.objects.filter(pk=site_id).values_list("typical_chat_minutes", flat=True)
        chat_seconds = 60 * (minutes.first() or 0)
    slots = sum(present_agents(now, site_id=site_id).distinct().values_list("capacity", flat=True))
    return WaitBasis(chat_seconds, slots)


def site_agent_emails(site_id: int) -> list[str]:
    """Email addresses of the active agents serving a site."""
    rows = (
        AgentProfile.objects.filter(serves(site_id), user__is_active=True)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
        .distinct()
    )
    return sorted(set(rows))


def active_load(agent_id: int) -> int:
    """The agent's active chats (plain SQL: routing counts it under each candidate's lock)."""
    return sql.active_load(agent_id)


def visitor_context_dict(visitor: Visitor) -> dict:
    """A visitor as agents see it: who (if they said), the page they are on, where they
    came from, their browser and time zone. All of it came from the visitor's browser:
    the dashboard shows it as text, and the URLs only as http(s) links."""
    software = visitor_context.describe_user_agent(visitor.user_agent)
    return {
        "name": visitor.name or None,
        "email": visitor.email or None,
        "page_url": visitor.page_url or None,
        "page_title": visitor.page_title or None,
        "referrer": visitor.referrer or None,
        "user_agent": visitor.user_agent or None,
        "browser": software.browser,
        "os": software.os,
        "timezone": visitor.timezone or None,
        # Identity verification (addition): the site's server vouched for this user.
        "verified": visitor.verified_at is not None,
        "user_id": visitor.user_id or None,
    }


# How much of a conversation's first message a list shows.
SNIPPET_CHARS = 140


def first_visitor_message() -> Subquery:
    """The start of a conversation's first visitor message, for a snippet: twice the
    snippet's length (collapsing blanks may shorten it, and then says whether it went on)."""
    return Subquery(
        Message.objects.filter(conversation=OuterRef("pk"), sender=SenderKind.VISITOR)
        .order_by("seq")
        .annotate(snippet=Substr("body", 1, 2 * SNIPPET_CHARS + 1))
        .values("snippet")[:1]
    )


def queue_for_agent(agent_id: int) -> list[dict]:
    """The queue as an agent sees it (`queue.list`, addition): who waits at the sites the
    agent serves, in each site's queue order, since when, with the start of the first
    message, and whether the agent may take the chat (the site allows picking). One
    query."""
    queued = Conversation.objects.filter(status=Status.QUEUED)
    sites = agent_site_ids(agent_id)
    if sites is not None:
        queued = queued.filter(site_id__in=sites)
    rows = (
        queued.annotate(first_message=first_visitor_message())
        .order_by("site_id", "-queue_priority", "queued_at", "id")
        .values(
            "id",
            "site_id",
            "queued_at",
            "visitor_id",
            "visitor__name",
            "visitor__email",
            "first_message",
            "site__agents_pick_from_queue",
        )
    )
    entries, position, site = [], 0, None
    for row in rows:
        position = position + 1 if row["site_id"] == site else 1
        site = row["site_id"]
        entries.append(
            {
                "id": row["id"],
                "site": row["site_id"],
                "position": position,
                "queued_at": row["queued_at"].isoformat() if row["queued_at"] else None,
                "visitor": {
                    "id": row["visitor_id"],
                    "name": row["visitor__name"] or None,
                    "email": row["visitor__email"] or None,
                },
                "first_message": snippet(row["first_message"]),
                "can_take": row["site__agents_pick_from_queue"],
            }
        )
    return entries


def snippet(body: str | None) -> str | None:
    if body is None:
        return None
    text = " ".join(body[: 2 * SNIPPET_CHARS].split())
    if len(text) <= SNIPPET_CHARS and len(body) <= 2 * SNIPPET_CHARS:
        return text
    return text[: SNIPPET_CHARS - 1] + "…"


def agent_conversation_dict(conversation: Conversation, *, with_messages: bool = False) -> dict:
    data = {
        "id": conversation.id,
        "status": conversation.status,
        "visitor": {"id": conversation.visitor_id},
        # (addition) What the widget reported about the visitor; load conversations
        # with select_related("visitor") so a list of them costs no query per row.
        "visitor_context": visitor_context_dict(conversation.visitor),
        "last_seq": conversation.last_seq,
        "unread": conversation.agent_unread,
        "read_seq": conversation.agent_read_seq,
        "visitor_read_seq": conversation.visitor_read_seq,
        "site": conversation.site_id,
        # (addition) "chat" or "email"; an email conversation's subject and sender.
        "channel": conversation.channel,
        "email": email_dict(conversation),
    }
    if with_messages:
        data["messages"] = messages_after(conversation.id, 0)
        data["notes"] = notes_of(conversation.id)
    return data


def email_dict(conversation: Conversation) -> dict | None:
    """An email conversation's subject and its latest mail's `sender` (as its From
    header said), `sender_verified` only when the upstream server's SPF or DKIM check
    passed for it; None for a chat."""
    if conversation.channel != Conversation.Channel.EMAIL:
        return None
    return {
        "subject": conversation.subject,
        "sender": conversation.sender_address,
        "sender_verified": conversation.sender_verified,
    }


def visitor_conversation_dict(conversation: Conversation) -> dict:
    agent = conversation.agent if conversation.status == Status.ACTIVE else None
    position = queue_position(conversation) if conversation.status == Status.QUEUED else None
    return {
        "id": conversation.id,
        "status": conversation.status,
        "queue_position": position,
        # (addition) null unless queued, and while no agent can take a chat.
        "estimated_wait_seconds": wait_basis(conversation.site_id).estimate(position)
        if position is not None
        else None,
        "agent": agent.public_dict() if agent else None,
        "last_seq": conversation.last_seq,
        "agent_read_seq": conversation.agent_read_seq,
        "channel": conversation.channel,
    }
