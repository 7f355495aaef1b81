"""Every state change of a chat: sessions, messages, routing, presence, closing, sweeping.

Plain functions with keyword-only arguments, one short transaction each. They persist,
commit, and only then broadcast (`realtime.broadcast_on_commit`).
"""

import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import psycopg
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from agents.models import AgentProfile

from . import (
    attachments,
    loop_db,
    realtime,
    routing_policy,
    selectors,
    transcript_email,
    visitor_context,
)
from .models import (
    Attachment,
    Conversation,
    ConversationRating,
    Message,
    Note,
    SenderKind,
    Site,
    Visitor,
    hash_token,
    new_visitor_token,
)
from .selectors import NotFound, SiteDisabled  # noqa: F401 - re-exported for callers

logger = logging.getLogger(__name__)
Status = Conversation.Status

OPEN = tuple(str(status) for status in Conversation.OPEN_STATUSES)
CONVERSATION_TABLE = Conversation._meta.db_table
MESSAGE_TABLE = Message._meta.db_table
VISITOR_TABLE = Visitor._meta.db_table
AGENT_TABLE = AgentProfile._meta.db_table

REQUEUED_TEXT = "Your agent was disconnected. You are back at the front of the queue."
IDLE_CLOSED_TEXT = "This conversation was closed after a period of inactivity."


class ConversationClosed(Exception):
    """The caller's own conversation is closed."""


class SeqOutOfRange(Exception):
    """A `read` past the conversation's last seq."""


class ClientMsgIdTaken(Exception):
    """The client_msg_id is already used in this conversation by the other side."""


class AgentUnavailable(Exception):
    """A transfer's target agent cannot take the chat now (away, offline, full, not
    serving the site, or the transferring agent itself)."""


class AlreadyRated(Exception):
    """The visitor already rated this conversation (one rating each)."""


class AttachmentNotFound(NotFound):
    """A message named an attachment that is not the sender's unsent upload in this
    conversation (someone else's, already sent, deleted, or never existed)."""


TRANSFERRED_TEXT = "You are now chatting with {name}."
TRANSFERRED_TO_QUEUE_TEXT = "You are being transferred to another agent. Please wait a moment."


@dataclass(frozen=True)
class PostedMessage:
    message: dict
    created: bool
    # For a retry (created=False): the groups the message goes to, to ring them again.
    recipients: tuple[str, ...] = ()

    def ack(self) -> dict:
        return {
            "type": "message.ack",
            "client_msg_id": self.message["client_msg_id"],
            "conversation": self.message["conversation"],
            "seq": self.message["seq"],
        }


# --- visitors -------------------------------------------------------------------


def create_visitor_session(
    *,
    site_key: str,
    visitor_token: str | None,
    rotate: bool = False,
    before_issuing: Callable[[], None] | None = None,
) -> tuple[Visitor, str]:
    """The visitor behind a known token of this site (token unchanged), else a new one.

    `rotate` gives a known token's visitor a new token; the old one stops working and
    the sockets that said hello with it are closed. `before_issuing` runs before any new
    token is made (the per-address limit); raising there issues and stores nothing.
    """
    site = selectors.enabled_site(site_key)
    if visitor_token:
        old_hash = hash_token(visitor_token)
        visitor = Visitor.objects.filter(token_hash=old_hash, site=site).first()
        if visitor is not None and not rotate:
            Visitor.objects.filter(pk=visitor.pk).update(last_seen=timezone.now())
            return visitor, visitor_token
        if visitor is not None:
            if before_issuing is not None:
                before_issuing()
            token = new_visitor_token()
            # Race: two rotations of one token at once; the update matches the old hash
            # only once, and the loser is treated like any unknown token (a new visitor).
            if Visitor.objects.filter(pk=visitor.pk, token_hash=old_hash).update(
                token_hash=hash_token(token), last_seen=timezone.now()
            ):
                realtime.broadcast_on_commit(
                    [realtime.visitor_group(visitor.pk)], {"type": realtime.TOKEN_ROTATED_EVENT}
                )
                return visitor, token
    if before_issuing is not None:
        before_issuing()
    token = new_visitor_token()
    visitor = Visitor.objects.create(site=site, token_hash=hash_token(token))
    return visitor, token


def leave_offline_message(
    *,
    site_key: str,
    visitor_token: str | None,
    name: str,
    email: str,
    question: str,
    before_issuing: Callable[[], None] | None = None,
    before_opening: Callable[[], None] | None = None,
) -> tuple[Visitor, str, PostedMessage]:
    """The widget's offline form: the visitor (a known token's, else a new one) gets the
    name and email it gave, and its question is posted like a chat message, opening a
    queued conversation that agents see (routed at once if someone is free after all)."""
    visitor, token = create_visitor_session(
        site_key=site_key, visitor_token=visitor_token, before_issuing=before_issuing
    )
    Visitor.objects.filter(pk=visitor.pk).update(name=name, email=email)
    visitor.name, visitor.email = name, email
    posted = post_visitor_message(
        visitor_id=visitor.id,
        client_msg_id=f"offline-{new_visitor_token()[:16]}",
        body=question,
        before_opening=before_opening,
    )
    return visitor, token, posted


def touch_visitor(*, visitor_id: int) -> None:
    Visitor.objects.filter(pk=visitor_id).update(last_seen=timezone.now())


def post_visitor_message(
    *,
    visitor_id: int,
    client_msg_id: str,
    body: str,
    origin_channel: str | None = None,
    before_opening: Callable[[], None] | None = None,
    attachment_id: int | None = None,
    try_at_once: bool = True,
) -> PostedMessage:
    """Store a visitor's message, opening a conversation if none is open.

    `before_opening` runs just before a conversation would be opened (the shared limit
    on new conversations); raising there stores nothing. `attachment_id` names the
    visitor's unsent upload in its open conversation (`AttachmentNotFound` otherwise).
    `try_at_once=False`: the caller has just tried the everyday statement
    (`post_message_on_loop`), or expects this message to open a chat: it needs the
    full path, which then starts with the visitor's row lock (the statement it saves is
    one in eight of a burst's openings).
    """
    now = timezone.now()
    if attachment_id is None and try_at_once:
        wire = _append_at_once(
            sender=SenderKind.VISITOR,
            visitor_id=visitor_id,
            body=body,
            client_msg_id=client_msg_id,
            origin_channel=origin_channel,
            now=now,
        )
        if wire is not None:
            return PostedMessage(wire, created=True)
    opened = None
    with transaction.atomic():
        conversation = None
        if try_at_once:
            conversation = _lock_with_earlier_send(client_msg_id, visitor_id=visitor_id)
        if conversation is None:
            # Race: two tabs of one visitor may open a conversation at once; the row
            # lock on Visitor serialises them and the second finds the first's.
            site_id = _lock_visitor(visitor_id)
            conversation = _lock_with_earlier_send(client_msg_id, visitor_id=visitor_id)
            if conversation is None:
                # A retry of a message whose conversation closed since is not a new chat.
                earlier = _earlier_visitor_send(visitor_id, client_msg_id)
                if earlier is not None:
                    return PostedMessage(
                        selectors.message_dict(earlier),
                        created=False,
                        recipients=_participant_groups(earlier.conversation),
                    )
                if attachment_id is not None:
                    # Uploads go into an open conversation: a new one holds none.
                    raise AttachmentNotFound
                if before_opening is not None:
                    # Under the visitor's row lock (and on SQLite the write lock): a slow
                    # limit store holds them up to ratelimits.REDIS_TIMEOUT, on this
                    # rare path only.
                    before_opening()
                conversation = _insert_new(
                    Conversation(
                        site_id=site_id,
                        visitor_id=visitor_id,
                        status=Status.QUEUED,
                        queued_at=now,
                        last_activity_at=now,
                    )
                )
                conversation.earlier_message_id = None  # new: nothing sent in it yet
                opened = conversation
        existing = _earlier_send(conversation)
        if existing is not None:
            if existing.sender != SenderKind.VISITOR:
                raise ClientMsgIdTaken
            return PostedMessage(
                selectors.message_dict(existing),
                created=False,
                recipients=_participant_groups(conversation),
            )
        message = _append_message(
            conversation,
            sender=SenderKind.VISITOR,
            body=body,
            client_msg_id=client_msg_id,
            origin_channel=origin_channel,
            now=now,
            attachment_id=attachment_id,
        )
        placed = opened is not None and _assign_at_once(opened, now=now)
    if opened is not None and not placed:
        _route_new_conversation(opened, now=now)
    return PostedMessage(message, created=True)


def visitor_typing(*, visitor_id: int, active: bool, text: str | None = None) -> None:
    """Relay the visitor's typing state to the assigned agent only. `text` (sneak peek)
    is the unsent draft: the caller passes it only when the site allows it; it is
    relayed to the agent's sockets, never stored, never sent to anyone else."""
    conversation = selectors.open_conversation(visitor_id)
    if conversation is None:
        raise NotFound
    if conversation.agent_id is not None:
        frame = {
            "type": "typing",
            "conversation": conversation.id,
            "from": "visitor",
            "active": active,
        }
        if active and text is not None:
            frame["text"] = text
        realtime.broadcast_on_commit(
            [realtime.agent_group(conversation.agent_id)], realtime.frame_event(frame)
        )


def visitor_read(*, visitor_id: int, seq: int, origin_channel: str | None = None) -> None:
    with transaction.atomic():
        conversation = _lock_visitors_open_conversation(visitor_id)
        if seq > conversation.last_seq:
            raise SeqOutOfRange
        if seq <= conversation.visitor_read_seq:
            return
        conversation.visitor_read_seq = seq
        conversation.save(update_fields=["visitor_read_seq"])
        frame = {"type": "read", "conversation": conversation.id, "seq": seq, "by": "visitor"}
        groups = [realtime.visitor_group(visitor_id)]
        if conversation.agent_id is not None:
            groups.append(realtime.agent_group(conversation.agent_id))
        realtime.broadcast_on_commit(
            groups, realtime.frame_event(frame, skip_channel=origin_channel)
        )


def rate_conversation(*, visitor_id: int, score: int, comment: str = "") -> dict:
    """The visitor's CSAT rating (1-5, optional comment) of its latest conversation,
    open or closed; once per conversation. Every tab of the visitor and the
    conversation's agent hear `conversation.rated`."""
    with transaction.atomic():
        latest = selectors.latest_conversation(visitor_id)
        if latest is None:
            raise NotFound
        # Race: two tabs rating at once; the row lock makes the second see the first.
        conversation = Conversation.objects.select_for_update().get(pk=latest.pk)
        if ConversationRating.objects.filter(conversation=conversation).exists():
            raise AlreadyRated
        ConversationRating.objects.create(conversation=conversation, score=score, comment=comment)
        frame = {"type": "conversation.rated", "conversation": conversation.id, "score": score}
        realtime.broadcast_on_commit(
            [realtime.visitor_group(visitor_id)], realtime.frame_event(frame)
        )
        if conversation.agent_id is not None:
            realtime.broadcast_on_commit(
                [realtime.agent_group(conversation.agent_id)],
                realtime.frame_event({**frame, "comment": comment}),
            )
    return frame


def close_by_visitor(*, visitor_id: int) -> None:
    with transaction.atomic():
        conversation = _lock_visitors_open_conversation(visitor_id)
        was = _close(conversation, by=SenderKind.VISITOR, now=timezone.now())
    _after_close(conversation, was_status=was)


# --- visitor context and transcripts ---------------------------------------------


def report_visitor_context(
    *,
    visitor_id: int,
    allowed_origins: list[str],
    page: object = None,
    timezone_name: object = None,
    user_agent: str | None = None,
    known: Visitor | None = None,
) -> list[str]:
    """Store what the widget reports about the visitor (`hello`, `page.view`), cleaned
    by chat/visitor_context.py (a value that fails a check is dropped, never stored).
    Only fields that changed are written, and only then does the agent of the visitor's
    active conversation hear `visitor.context`. Returns the names of the changed fields.

    `known` (the visitor as `hello` just read it) saves the read when nothing changed,
    which is every reconnect on the same page.
    """
    fields = visitor_context.clean_page(page, allowed_origins)
    if (zone := visitor_context.clean_timezone(timezone_name)) is not None:
        fields["timezone"] = zone
    if user_agent is not None:
        fields["user_agent"] = visitor_context.clean_user_agent(user_agent)
    if not fields or (known is not None and all(getattr(known, f) == v for f, v in fields.items())):
        return []
    with transaction.atomic():
        # Race: two tabs of one visitor report pages at once; the row lock orders them,
        # so the agent's last `visitor.context` is the page that was stored last.
        visitor = Visitor.objects.select_for_update().filter(pk=visitor_id).first()
        if visitor is None:
            raise NotFound
        changed = [f for f, v in fields.items() if getattr(visitor, f) != v]
        if not changed:
            return []
        for f in changed:
            setattr(visitor, f, fields[f])
        visitor.save(update_fields=changed)
        active = (
            Conversation.objects.filter(visitor_id=visitor_id, status=Status.ACTIVE)
            .values_list("id", "agent_id")
            .first()
        )
        if active is not None:
            frame = {
                "type": "visitor.context",
                "conversation": active[0],
                "visitor": {"id": visitor_id},
                "visitor_context": selectors.visitor_context_dict(visitor),
            }
            realtime.broadcast_on_commit(
                [realtime.agent_group(active[1])], realtime.frame_event(frame)
            )
    return changed


def prepare_transcript_email(
    *,
    visitor_id: int,
    email: str,
    before_sending: Callable[[int], None] | None = None,
) -> transcript_email.TranscriptEmail:
    """The transcript of the visitor's latest conversation (open or closed), addressed
    to `email` and ready to send; `NotFound` if it never had one. `before_sending` gets
    the conversation id first (the shared limits); raising there changes nothing.

    The visitor's email is stored if it had none (one it left in the offline form is
    never overwritten). Nothing is sent here: the caller sends it outside any
    transaction and off the database thread (`transcript_email.send`), since a mail
    server may take seconds."""
    conversation = selectors.latest_conversation(visitor_id)
    if conversation is None:
        raise NotFound
    if before_sending is not None:
        before_sending(conversation.id)
    Visitor.objects.filter(pk=visitor_id, email="").update(email=email)
    return transcript_email.build(conversation, to=email)


# --- agents ---------------------------------------------------------------------


def post_agent_message(
    *,
    agent_id: int,
    conversation_id: int,
    client_msg_id: str,
    body: str,
    origin_channel: str | None = None,
    attachment_id: int | None = None,
    try_at_once: bool = True,
) -> PostedMessage:
    """Store an agent's message into a conversation assigned to that agent, with the
    agent's unsent upload `attachment_id` if given (`AttachmentNotFound` otherwise).
    `try_at_once`: as for `post_visitor_message`."""
    now = timezone.now()
    if attachment_id is None and try_at_once:
        wire = _append_at_once(
            sender=SenderKind.AGENT,
            agent_id=agent_id,
            conversation_id=conversation_id,
            body=body,
            client_msg_id=client_msg_id,
            origin_channel=origin_channel,
            now=now,
        )
        if wire is not None:
            return PostedMessage(wire, created=True)
    with transaction.atomic():
        conversation = _lock_with_earlier_send(client_msg_id, conversation_id=conversation_id)
        if conversation is None:
            raise NotFound
        existing = _earlier_send(conversation)
        if existing is not None and existing.sender_agent_id == agent_id:
            # A retry, even after the chat moved on: the same ack again.
            return PostedMessage(
                selectors.message_dict(existing),
                created=False,
                recipients=_participant_groups(conversation),
            )
        if conversation.agent_id != agent_id:
            raise NotFound
        if existing is not None:
            raise ClientMsgIdTaken
        if conversation.status == Status.CLOSED:
            raise ConversationClosed
        message = _append_message(
            conversation,
            sender=SenderKind.AGENT,
            sender_agent_id=agent_id,
            body=body,
            client_msg_id=client_msg_id,
            origin_channel=origin_channel,
            now=now,
            attachment_id=attachment_id,
        )
    return PostedMessage(message, created=True)


@dataclass(frozen=True)
class PostedNote:
    note: dict
    created: bool

    def ack(self) -> dict:
        return {
            "type": "note.ack",
            "client_msg_id": self.note["client_msg_id"],
            "conversation": self.note["conversation"],
            "id": self.note["id"],
        }


def post_note(*, agent_id: int, conversation_id: int, client_msg_id: str, body: str) -> PostedNote:
    """Store an internal note on a conversation assigned to this agent. Notes go to the
    agent's sockets only, never to the visitor's group, and take no seq."""
    with transaction.atomic():
        # Locked so `after_seq` is the last message committed before the note.
        conversation = Conversation.objects.select_for_update().filter(pk=conversation_id).first()
        if conversation is None:
            raise NotFound
        existing = (
            Note.objects.filter(conversation=conversation, client_msg_id=client_msg_id)
            .select_related("author")
            .first()
        )
        if existing is not None and existing.author_id == agent_id:
            return PostedNote(selectors.note_dict(existing), created=False)
        if conversation.agent_id != agent_id:
            raise NotFound
        if existing is not None:
            raise ClientMsgIdTaken
        if conversation.status == Status.CLOSED:
            raise ConversationClosed
        note = Note.objects.create(
            conversation=conversation,
            author_id=agent_id,
            body=body,
            client_msg_id=client_msg_id,
            after_seq=conversation.last_seq,
        )
        wire = selectors.note_dict(Note.objects.select_related("author").get(pk=note.pk))
        realtime.broadcast_on_commit(
            [realtime.agent_group(agent_id)], realtime.frame_event({"type": "note", **wire})
        )
    return PostedNote(wire, created=True)


def transfer_conversation(*, agent_id: int, conversation_id: int, to_agent_id: int | None) -> None:
    """Hand an active chat of this agent to another agent with room, or (None) back to
    the front of the queue. The visitor gets a system message and, once someone has
    it, `conversation.assigned`; the new agent gets it with the whole history and its
    notes; the old agent gets `conversation.transferred`."""
    now = timezone.now()
    with transaction.atomic():
        conversation = _lock_agents_open_conversation(agent_id, conversation_id)
        if to_agent_id is None:
            # Someone else should take it: routing passes this agent over while
            # another is present (routing_policy.lock_agent_for).
            _back_to_queue(
                conversation, text=TRANSFERRED_TO_QUEUE_TEXT, now=now, handed_back_by=agent_id
            )
            target = None
        else:
            target = _lock_transfer_target(to_agent_id, conversation, now=now)
            conversation.agent = target
            _append_message(
                conversation,
                sender=SenderKind.SYSTEM,
                body=TRANSFERRED_TEXT.format(name=target.display_name),
                now=now,
            )
            _assign(conversation, target, now=now)
        frame = {
            "type": "conversation.transferred",
            "conversation": conversation.id,
            "to": target.public_dict() if target else None,
        }
        realtime.broadcast_on_commit([realtime.agent_group(agent_id)], realtime.frame_event(frame))
    logger.info("conversation %s transferred by agent %s to %s", conversation_id, agent_id, target)
    if target is None:
        _broadcast_queue(conversation.site_id)
        assign_queued(site_ids=[conversation.site_id], now=now)
    else:
        # The old agent has a free slot now.
        assign_queued(site_ids=selectors.agent_site_ids(agent_id), now=now)


def _lock_transfer_target(
    to_agent_id: int, conversation: Conversation, *, now: datetime
) -> AgentProfile:
    """Lock the target agent's row and check, under the lock, that it may take one more
    chat of this site now (the same rule and lock as `routing_policy.lock_agent_for`, so
    a transfer and a routing at once cannot both fill its last slot)."""
    if to_agent_id == conversation.agent_id:
        raise AgentUnavailable
    if not AgentProfile.objects.filter(
        selectors.serves(conversation.site_id), pk=to_agent_id
    ).exists():
        raise AgentUnavailable
    agent = (
        AgentProfile.objects.select_for_update(of=("self",))
        .filter(pk=to_agent_id, user__is_active=True)
        .first()
    )
    if (
        agent is None
        or agent.status != AgentProfile.Status.AVAILABLE
        or agent.last_heartbeat is None
        or agent.last_heartbeat < selectors.heartbeat_cutoff(now)
        or selectors.active_load(agent.id) >= agent.capacity
    ):
        raise AgentUnavailable
    return agent


def agent_typing(*, agent_id: int, conversation_id: int, active: bool) -> None:
    conversation = selectors.conversation_for_agent(agent_id, conversation_id)
    if conversation.status == Status.CLOSED:
        raise ConversationClosed
    frame = {"type": "typing", "conversation": conversation.id, "from": "agent", "active": active}
    realtime.broadcast_on_commit(
        [realtime.visitor_group(conversation.visitor_id)], realtime.frame_event(frame)
    )


def agent_read(
    *, agent_id: int, conversation_id: int, seq: int, origin_channel: str | None = None
) -> None:
    with transaction.atomic():
        conversation = _lock_agents_open_conversation(agent_id, conversation_id)
        if seq > conversation.last_seq:
            raise SeqOutOfRange
        if seq <= conversation.agent_read_seq:
            return
        conversation.agent_read_seq = seq
        conversation.agent_unread = conversation.messages.filter(
            seq__gt=seq, sender=SenderKind.VISITOR
        ).count()
        conversation.save(update_fields=["agent_read_seq", "agent_unread"])
        frame = {"type": "read", "conversation": conversation.id, "seq": seq, "by": "agent"}
        realtime.broadcast_on_commit(
            [realtime.visitor_group(conversation.visitor_id), realtime.agent_group(agent_id)],
            realtime.frame_event(frame, skip_channel=origin_channel),
        )


def close_by_agent(*, agent_id: int, conversation_id: int) -> None:
    with transaction.atomic():
        conversation = _lock_agents_open_conversation(agent_id, conversation_id)
        was = _close(conversation, by=SenderKind.AGENT, now=timezone.now())
    _after_close(conversation, was_status=was)


def close_by_admin(*, conversation_id: int) -> None:
    """Close any open conversation (queued or active) on an operator's behalf, e.g. from
    the admin; both sides are told `by: "system"` and a freed slot goes to the queue."""
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().filter(pk=conversation_id).first()
        if conversation is None:
            raise NotFound
        if conversation.status == Status.CLOSED:
            raise ConversationClosed
        was = _close(conversation, by=SenderKind.SYSTEM, now=timezone.now())
    _after_close(conversation, was_status=was)


def set_presence(*, agent_id: int, status: str, origin_channel: str | None = None) -> str:
    """Switch an agent between available and away; available agents take queued chats.
    A choice, so it ends an automatic away (`auto_away`) either way: a chosen away is
    not undone by activity."""
    now = timezone.now()
    with transaction.atomic():
        AgentProfile.objects.filter(pk=agent_id).update(
            status=status, auto_away=False, last_heartbeat=now
        )
        frame = {"type": "presence", "status": status}
        realtime.broadcast_on_commit(
            [realtime.agent_group(agent_id)],
            realtime.frame_event(frame, skip_channel=origin_channel),
        )
    if status == AgentProfile.Status.AVAILABLE:
        assign_queued(site_ids=selectors.agent_site_ids(agent_id), now=now)
    publish_agents_online(now=now)
    return status


# Each agent's latest input (epoch seconds) as reported by any of its dashboards: see
# `report_activity`. In Django's cache, so shared by the workers when the cache is.
_LAST_INPUT_KEY = "supportdesk:agent-input:{}"
_LAST_INPUT_TTL = 24 * 3600


def report_activity(
    *, agent_id: int, idle_seconds: float, now: datetime | None = None
) -> str | None:
    """An agent's dashboard says how long since the agent last touched it. The server
    judges: an available agent idle for SUPPORTDESK_AUTO_AWAY_SECONDS is put away with
    `auto_away`; an automatically away agent is made available again by its next input.
    A chosen away (`auto_away` false) is never undone here. Returns the new status if
    this report changed it.

    An agent may have dashboards on two machines: the idle one must not put away the
    agent working at the other, so the agent's latest input over all reports is what
    counts (kept in the cache for a day). Race: two reports at once may both read the
    old value and the older input may be written last; the next report (every ping)
    sets it right, and the status change itself is one conditional UPDATE, never two.
    """
    threshold = settings.SUPPORTDESK_AUTO_AWAY_SECONDS
    if threshold <= 0:
        return None
    now = now or timezone.now()
    reported = now.timestamp() - idle_seconds
    key = _LAST_INPUT_KEY.format(agent_id)
    try:
        last_input = max(reported, cache.get(key, reported))
        cache.set(key, last_input, _LAST_INPUT_TTL)
    except Exception as exc:  # a cache outage must not stop presence: use this report
        logger.warning("agent input cache unavailable: %s", exc)
        last_input = reported
    available, away = AgentProfile.Status.AVAILABLE, AgentProfile.Status.AWAY
    idle_for = now.timestamp() - last_input
    if idle_for >= threshold:
        changed = AgentProfile.objects.filter(pk=agent_id, status=available).update(
            status=away, auto_away=True
        )
        status = away
    else:
        changed = AgentProfile.objects.filter(pk=agent_id, status=away, auto_away=True).update(
            status=available, auto_away=False, last_heartbeat=now
        )
        status = available
    if not changed:
        return None
    logger.info("agent %s is %s automatically (idle %.0f s)", agent_id, status, idle_for)
    realtime.broadcast_on_commit(
        [realtime.agent_group(agent_id)],
        realtime.frame_event({"type": "presence", "status": status, "auto": True}),
    )
    if status == available:
        assign_queued(site_ids=selectors.agent_site_ids(agent_id), now=now)
    publish_agents_online(now=now)
    return status


# The enabled sites whose visitors were last told "agents online" (`agents.online`).
_ONLINE_SITES_KEY = "supportdesk:online-sites"


def publish_agents_online(*, now: datetime | None = None) -> None:
    """Tell the visitors of each site whose "agents online" changed since the last
    look, with one `agents.online` frame to the site's visitor group: on change only,
    so 10,000 idle visitor sockets cost nothing while presence holds still.

    Called after a presence change (at once) and by every sweep (which notices
    heartbeats that lapsed, and so also bounds any flapping to one look per sweep for
    those). The last state is kept in Django's cache. Race: two workers may look at
    once and both send the same frame, or an older look may be written last; visitor
    sockets drop a frame that repeats what they last showed, and the next sweep's look
    corrects a stale cache within SUPPORTDESK_SWEEP_INTERVAL. With no last state (a
    fresh cache) every site is announced once; sockets drop the repeats."""
    online = selectors.online_site_ids(now)
    try:
        before = cache.get(_ONLINE_SITES_KEY)
        cache.set(_ONLINE_SITES_KEY, online, None)
    except Exception as exc:  # no cache, no diff: announce everything this time
        logger.warning("online-sites cache unavailable: %s", exc)
        before = None
    if before is None:
        changed = online | frozenset(Site.objects.filter(enabled=True).values_list("pk", flat=True))
    else:
        changed = online ^ before
    for site_id in changed:
        frame = {"type": "agents.online", "online": site_id in online}
        realtime.broadcast_on_commit(
            [realtime.site_visitors_group(site_id)], realtime.frame_event(frame)
        )


def disconnect_agent(*, user_id: int) -> None:
    """Close every open socket of the agent behind this login (deactivated): each gets
    close 4401 once the deactivation commits, instead of at its next heartbeat."""
    for agent_id in AgentProfile.objects.filter(user_id=user_id).values_list("id", flat=True):
        realtime.broadcast_on_commit(
            [realtime.agent_group(agent_id)], {"type": realtime.AGENT_GONE_EVENT}
        )


def heartbeat(*, agent_id: int, route: bool = False) -> bool:
    """Refresh an agent's heartbeat; False when the login was deactivated or removed.

    `route` (on connect) also hands queued chats to the agent if it is available.
    """
    now = timezone.now()
    alive = bool(
        AgentProfile.objects.filter(pk=agent_id, user__is_active=True).update(last_heartbeat=now)
    )
    if alive and route:
        assign_queued(site_ids=selectors.agent_site_ids(agent_id), now=now)
        # A reconnecting agent may put a site back online.
        publish_agents_online(now=now)
    return alive


def set_capacity(*, agent_id: int, capacity: int) -> None:
    AgentProfile.objects.filter(pk=agent_id).update(capacity=capacity)
    assign_queued(site_ids=selectors.agent_site_ids(agent_id))


# --- routing --------------------------------------------------------------------


def assign_queued(
    *, site_ids: Iterable[int] | None = None, now: datetime | None = None
) -> list[int]:
    """Give queued conversations to free agents, oldest first, until none can be placed.

    Each assignment is its own short transaction. Returns the assigned conversation ids.
    For a run started by a freed slot (or an agent coming): the new chat's own run is
    `_route_new_conversation`.
    """
    now = now or timezone.now()
    assigned, changed_sites = _place_queued(site_ids, now=now)
    for site_id in changed_sites:
        _broadcast_queue(site_id)
    return assigned


def _place_queued(
    site_ids: Iterable[int] | None, *, now: datetime, new_chat: int | None = None
) -> tuple[list[int], set[int]]:
    """The routing loop of `assign_queued`: (assigned conversation ids, sites whose
    queue changed). The agents of a site are ranked once per run
    (`routing_policy.Ranking`), not once per chat.

    `new_chat`: the run is that chat's own (`_route_new_conversation`): when every
    queued row is held, it waits for its own chat only, not for the oldest (below).
    """
    site_ids = None if site_ids is None else list(site_ids)
    assigned: list[int] = []
    changed_sites: set[int] = set()
    rankings: dict[int, routing_policy.Ranking] = {}
    blocked_sites: set[int] = set()
    if new_chat is not None:
        # Before any lock: when every agent is full (each arrival of a burst's second
        # half), one query says so. A freed slot's run ranks after locking a chat.
        for site_id in site_ids:
            rankings[site_id] = routing_policy.Ranking(site_id, now)
            if not rankings[site_id].anyone_free():
                blocked_sites.add(site_id)
    # Chats waiting for someone other than the agent who handed them back: the chats
    # behind them may still take that agent's free slot.
    passed_over: set[int] = set()
    waited_for_new_chat = False
    empty_reads = 0
    while site_ids is None or not blocked_sites.issuperset(site_ids):
        with transaction.atomic():
            # Race: two workers may fill slots at once. The row lock on a queued
            # conversation makes sure it is assigned once. Each router takes the oldest
            # one nobody else holds (SKIP LOCKED), so a burst of routers places different
            # chats at once instead of queueing on the oldest row (docs/performance.md).
            # When every queued row is held, a run for a freed slot waits for the
            # oldest, then finds it no longer queued or still there: a holder that
            # found no agent lets go, and the slot freed meanwhile must not be missed.
            # A new chat's run waits for its own chat only (a burst's routers would
            # all queue on the oldest row again): its holder is another router, who
            # reads the agents again before giving up on it (Ranking.stale), or a
            # message or a close that lets go at once. The price: while one router
            # holds the oldest chat and finds no agent, another that finds a slot
            # freed that very moment gives it to the next chat in line.
            queue = _Queue(site_ids, blocked_sites, passed_over)
            conversation = queue.lock_oldest(skip_locked=True)
            if conversation is None and new_chat is not None:
                if new_chat not in assigned and not waited_for_new_chat:
                    waited_for_new_chat = True
                    conversation = _lock_if_queued(new_chat)
            elif conversation is None:
                conversation = queue.lock_oldest(skip_locked=False)
                if conversation is None:
                    # Under the lock PostgreSQL may skip a row that changed while we
                    # waited and return nothing although others are queued: look again
                    # (bounded).
                    empty_reads += 1
                    if empty_reads < 3 and queue.exists():
                        continue
            if conversation is None:
                break
            ranking = rankings.get(conversation.site_id)
            if ranking is None:
                ranking = rankings[conversation.site_id] = routing_policy.Ranking(
                    conversation.site_id, now
                )
            else:
                ranking.stale = True
            agent = routing_policy.lock_agent_for(
                ranking, handed_back_by=conversation.handed_back_by_id
            )
            if agent is None and conversation.handed_back_by_id is not None:
                passed_over.add(conversation.id)
                continue
            if agent is None:
                blocked_sites.add(conversation.site_id)
                continue
            _assign(conversation, agent, now=now)
        assigned.append(conversation.id)
        changed_sites.add(conversation.site_id)
        if not ranking.anyone_free():
            blocked_sites.add(conversation.site_id)
    return assigned, changed_sites


class _Queue:
    """The queued conversations one routing step looks at, in queue order, in plain SQL:
    a burst runs these once or twice per chat."""

    def __init__(
        self, site_ids: list[int] | None, blocked_sites: set[int], passed_over: set[int]
    ) -> None:
        where, params = ["status = %s"], [Status.QUEUED]
        if site_ids is not None:
            where.append(f"site_id IN ({_placeholders(site_ids)})")
            params += site_ids
        if blocked_sites:
            where.append(f"site_id NOT IN ({_placeholders(blocked_sites)})")
            params += blocked_sites
        if passed_over:
            where.append(f"id NOT IN ({_placeholders(passed_over)})")
            params += passed_over
        self.where, self.params = " AND ".join(where), params

    def lock_oldest(self, *, skip_locked: bool) -> Conversation | None:
        """Lock and return the oldest one (call inside a transaction). SQLite has no
        row locks: its IMMEDIATE transaction already holds the write lock."""
        lock = ""
        if connection.features.has_select_for_update:
            lock = " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"
        rows = Conversation.objects.raw(
            f"SELECT * FROM {CONVERSATION_TABLE} WHERE {self.where}"
            f" ORDER BY {selectors.QUEUE_ORDER} LIMIT 1{lock}",
            self.params,
        )
        return next(iter(rows), None)

    def exists(self) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {CONVERSATION_TABLE} WHERE {self.where} LIMIT 1", self.params
            )
            return cursor.fetchone() is not None


def _lock_if_queued(conversation_id: int) -> Conversation | None:
    """Lock a conversation, waiting for its holder, and return it if still queued."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    rows = Conversation.objects.raw(
        f"SELECT * FROM {CONVERSATION_TABLE} WHERE id = %s AND status = %s{lock}",
        [conversation_id, Status.QUEUED],
    )
    return next(iter(rows), None)


def _placeholders(values: Iterable) -> str:
    return ", ".join(["%s"] * len(values))


def _assign(conversation: Conversation, agent: AgentProfile, *, now: datetime) -> None:
    """Give a locked conversation to a locked agent, and tell both once committed."""
    # Never assigned before (assigned_at is kept through a re-queue): no agent could
    # have written a note on it, so there are none to load.
    had_an_agent = conversation.assigned_at is not None
    conversation.status = Status.ACTIVE
    conversation.agent = agent
    conversation.assigned_at = now
    conversation.handed_back_by = None
    # The agent's copy carries the whole history; under the conversation's row lock it
    # is every message, so it also gives the unread count.
    messages = selectors.messages_without_attachments(conversation.id)
    if messages is None:
        messages = selectors.messages_after(conversation.id, 0)
    # A re-queued chat comes to its new agent unread, whatever the last agent read.
    conversation.agent_read_seq = 0
    conversation.agent_unread = sum(1 for m in messages if m["sender"] == SenderKind.VISITOR)
    _save_assignment(conversation, agent)
    visitor_copy = {
        "type": "conversation.assigned",
        "conversation": {
            "id": conversation.id,
            "status": conversation.status,
            "queue_position": None,
            "agent": agent.public_dict(),
        },
        "agent": agent.public_dict(),
    }
    if not Conversation.visitor.is_cached(conversation):
        # For the agent's copy (visitor_context); plain SQL, as above.
        [conversation.visitor] = Visitor.objects.raw(
            f"SELECT * FROM {VISITOR_TABLE} WHERE id = %s", [conversation.visitor_id]
        )
    agent_copy = {
        "type": "conversation.assigned",
        "conversation": {
            **selectors.agent_conversation_dict(conversation),
            "messages": messages,
            "notes": selectors.notes_of(conversation.id) if had_an_agent else [],
        },
        "agent": agent.public_dict(),
    }
    # (addition) Race: a reading of the queue taken before this commit may reach the
    # visitor after this frame, and would show the chat as queued again. The clock
    # read after the commit is above that reading's `queue_version`, so the widget
    # drops it (`_lock_queue_reading`). Runs before the broadcast below.
    transaction.on_commit(lambda: visitor_copy.update(queue_version=_queue_clock()), robust=True)
    realtime.broadcast_on_commit(
        [realtime.visitor_group(conversation.visitor_id)], realtime.frame_event(visitor_copy)
    )
    realtime.broadcast_on_commit([realtime.agent_group(agent.id)], realtime.frame_event(agent_copy))
    logger.info("conversation %s assigned to agent %s", conversation.id, agent.id)


def _save_assignment(conversation: Conversation, agent: AgentProfile) -> None:
    """The two UPDATEs of an assignment, written out (no ORM compile: a burst routes
    hundreds a second)."""
    adapt = connection.ops.adapt_datetimefield_value
    agent.last_assigned_at = conversation.assigned_at
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {CONVERSATION_TABLE} SET status = %s, agent_id = %s, assigned_at = %s,"
            " handed_back_by_id = NULL, agent_read_seq = %s, agent_unread = %s WHERE id = %s",
            [
                conversation.status,
                agent.id,
                adapt(conversation.assigned_at),
                conversation.agent_read_seq,
                conversation.agent_unread,
                conversation.id,
            ],
        )
        cursor.execute(
            f"UPDATE {AGENT_TABLE} SET last_assigned_at = %s WHERE id = %s",
            [adapt(agent.last_assigned_at), agent.id],
        )


def _assign_at_once(conversation: Conversation, *, now: datetime) -> bool:
    """Give a chat being opened (its row inserted by this transaction) to a free agent
    in the same transaction, when nobody of its site is queued ahead of it; True if it
    was. Otherwise, having changed nothing, False: it is routed after the commit as a
    queued chat (`_route_new_conversation`), oldest first.

    Saves a burst's assignments a commit and the routing run's own transaction
    (docs/performance.md, change 16). The agent is locked and its load counted under the
    lock as every assignment does (`routing_policy.lock_agent_for`): capacity holds.
    Race: a chat of the site opened a moment earlier whose transaction has not
    committed yet is not seen queued, and this one is assigned first; the same race as
    two openings committing out of `queued_at` order (`_route_new_conversation`).
    """
    with _hot_cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {CONVERSATION_TABLE} WHERE site_id = %s AND status = %s"
            " AND id <> %s LIMIT 1",
            [conversation.site_id, Status.QUEUED, conversation.id],
        )
        if cursor.fetchone() is not None:
            return False
    ranking = routing_policy.Ranking(conversation.site_id, now)
    if not ranking.anyone_free():
        return False
    agent = routing_policy.lock_agent_for(ranking)
    if agent is None:
        return False
    _assign(conversation, agent, now=now)
    return True


def _route_new_conversation(conversation: Conversation, *, now: datetime) -> None:
    _assigned, changed_sites = _place_queued(
        [conversation.site_id], now=now, new_chat=conversation.id
    )
    if changed_sites:
        # One reading for both changes: the assignments, and this chat's arrival.
        _broadcast_queue(conversation.site_id)
    else:
        # It joined the queue: its own position is new, and so is everyone's behind it.
        # Race: `queued_at` is taken before the transaction, so with two workers a
        # conversation can commit after others queued later than it and land ahead of
        # them, after they were told their positions; usually nobody is behind it.
        _broadcast_queue(conversation.site_id, from_conversation=conversation.id)


# Readings of one site's queue in this worker: at most one running and one waiting to
# start, and each starting at least QUEUE_READING_WINDOW seconds after the one before.
# A change made while a reading waits is covered by it (it starts after the change
# committed), so its maker need not read again: in a burst, the arrivals and
# assignments of one window share one reading (and one queue-length event to every
# agent socket) instead of reading the queue once each.
QUEUE_READING_WINDOW = 0.1
_readings = threading.Condition()
_reading_now: set[int] = set()
# site -> the conversations whose arrival the waiting reading must tell from (None:
# the whole queue).
_reading_next: dict[int, set[int] | None] = {}
_last_reading_at: dict[int, float] = {}  # site -> when its latest reading began


# A socket's service asks for its queue readings here instead of making them on its ORM
# thread: its worker's event loop makes them after the service returns
# (consumers.QueueReadings), coalesced as below, without holding an ORM thread while a
# reading waits for its turn (a burst's openings waited there, docs/performance.md,
# change 15). site -> the conversations to tell from (None: the whole queue).
_queue_readings_wanted: contextvars.ContextVar[dict[int, set[int] | None] | None] = (
    contextvars.ContextVar("queue_readings_wanted", default=None)
)


@contextlib.contextmanager
def queue_readings_deferred():
    """Within it, `_broadcast_queue` records what it would read into the dict yielded
    (see `want_queue_reading`), for the caller to read with `read_queue` later."""
    wanted: dict[int, set[int] | None] = {}
    token = _queue_readings_wanted.set(wanted)
    try:
        yield wanted
    finally:
        _queue_readings_wanted.reset(token)


def want_queue_reading(
    wanted: dict[int, set[int] | None], site_id: int, starts: set[int] | None
) -> None:
    """Add a reading of a site's queue from `starts` (None: all of it) to `wanted`."""
    if site_id in wanted:
        waiting = wanted[site_id]
        if starts is None:
            wanted[site_id] = None
        elif waiting is not None:
            waiting |= starts
    else:
        wanted[site_id] = None if starts is None else set(starts)


def _broadcast_queue(site_id: int, *, from_conversation: int | None = None) -> None:
    """Tell queued visitors of a site their positions (only from `from_conversation`
    back, if given), and agents the queue length.

    Under `queue_readings_deferred` (a socket's service) it only records the reading.

    Coalesced per worker (`_reading_next`): a caller returns at once when a reading
    that has not started yet is waiting, for the one running or for its window; that
    reading sends what this one would have, and its frames go out with its caller's.
    The waiting caller holds no transaction; inside an outer transaction (never on the
    sockets' paths) it reads at once: waiting there could hold a lock the running
    reading needs.
    """
    starts = None if from_conversation is None else {from_conversation}
    if connection.in_atomic_block:
        read_queue(site_id, starts)
        return
    wanted = _queue_readings_wanted.get()
    if wanted is not None:
        want_queue_reading(wanted, site_id, starts)
        return
    with _readings:
        if site_id in _reading_next:
            want_queue_reading(_reading_next, site_id, starts)
            return
        _reading_next[site_id] = starts
        while True:
            if site_id in _reading_now:
                _readings.wait()
                continue
            wait = _last_reading_at.get(site_id, float("-inf")) + QUEUE_READING_WINDOW
            wait -= time.monotonic()
            if wait <= 0:
                break
            _readings.wait(wait)
        starts = _reading_next.pop(site_id)
        _reading_now.add(site_id)
        _last_reading_at[site_id] = time.monotonic()
    try:
        read_queue(site_id, starts)
    finally:
        with _readings:
            _reading_now.discard(site_id)
            _readings.notify_all()


def read_queue(site_id: int, starts: set[int] | None) -> None:
    """One reading of a site's queue, broadcast: every queued visitor's position from
    the first of `starts` in the queue (all of them for None), and the length to the
    agents. A conversation of `starts` no longer queued left since it arrived: its
    leaving asked for a reading of the whole queue of its own."""
    with transaction.atomic():
        version = _lock_queue_reading(site_id)
        positions = selectors.queued_positions(site_id)
    reached = starts is None
    for conversation_id, visitor_id, position in positions:
        reached = reached or conversation_id in starts
        if not reached:
            continue
        frame = {
            "type": "conversation.queued",
            "conversation": conversation_id,
            "position": position,
            # (addition) Which reading of the queue this is: clients keep the highest.
            "queue_version": version,
            # (addition) cached per site (selectors.wait_basis): no query per visitor.
            "estimated_wait_seconds": selectors.estimated_wait_seconds(site_id, position),
        }
        realtime.broadcast_on_commit(
            [realtime.visitor_group(visitor_id)], realtime.frame_event(frame)
        )
    realtime.broadcast_on_commit(
        [realtime.AGENTS_GROUP],
        {
            "type": realtime.QUEUE_EVENT,
            "site": site_id,
            "length": len(positions),
            "version": version,
        },
    )


# Any constant; with the site id it names the advisory lock of one site's queue readings.
QUEUE_READING_LOCK = 0x51E0


def _lock_queue_reading(site_id: int) -> int:
    """Take the turn to read a site's queue (inside a transaction, held until it ends)
    and return the reading's `queue_version`: the database's clock, in microseconds.

    Race: two workers read one site's queue at once, and Redis may deliver the older
    reading's frames last, leaving a visitor with a stale position. Readings take turns
    under this lock, so a later turn reads a queue at least as new and gets a higher
    version; clients drop a frame older than one they have. PostgreSQL: an advisory
    lock (it writes nothing, so the read-only transaction commits without an fsync),
    and its clock, one for every worker. SQLite: the IMMEDIATE transaction already
    holds the database's write lock, and every worker is on this machine's clock.
    """
    if connection.vendor != "postgresql":
        return _queue_clock()
    with connection.cursor() as cursor:
        # One round trip: the clock is read from the row the lock's subquery returns,
        # so after the lock is granted.
        cursor.execute(
            f"SELECT {_PG_CLOCK} FROM (SELECT pg_advisory_xact_lock(%s, %s)) AS turn",
            [QUEUE_READING_LOCK, site_id],
        )
        return cursor.fetchone()[0]


def _queue_clock() -> int:
    """Now, in microseconds, on the clock every worker shares: PostgreSQL's, else this
    machine's (SQLite)."""
    if connection.vendor != "postgresql":
        return time.time_ns() // 1000
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_PG_CLOCK}")
        return cursor.fetchone()[0]


_PG_CLOCK = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS bigint)"


# --- closing and sweeping -------------------------------------------------------


def _close(conversation: Conversation, *, by: str, now: datetime) -> str:
    """Close a locked, open conversation; returns the status it had."""
    was = conversation.status
    conversation.status = Status.CLOSED
    conversation.closed_at = now
    conversation.closed_by = by
    conversation.save(update_fields=["status", "closed_at", "closed_by"])
    frame = {"type": "conversation.closed", "conversation": conversation.id, "by": by}
    groups = [realtime.visitor_group(conversation.visitor_id)]
    if conversation.agent_id is not None:
        groups.append(realtime.agent_group(conversation.agent_id))
    realtime.broadcast_on_commit(groups, realtime.frame_event(frame))
    logger.info("conversation %s closed by %s", conversation.id, by)
    return was


def _after_close(conversation: Conversation, *, was_status: str) -> None:
    if was_status == Status.ACTIVE:
        # A slot freed: the oldest queued conversation this agent serves takes it.
        assign_queued(site_ids=selectors.agent_site_ids(conversation.agent_id))
    else:
        # Everyone behind it moved up one.
        _broadcast_queue(conversation.site_id)


def requeue_lapsed_agents(*, now: datetime | None = None) -> list[int]:
    """Put back at the front of the queue the chats of agents whose heartbeat lapsed
    longer ago than the grace period, with a system message to the visitor."""
    now = now or timezone.now()
    cutoff = selectors.heartbeat_cutoff(now) - timezone.timedelta(
        seconds=settings.SUPPORTDESK_AGENT_GRACE
    )
    lapsed = Q(status=Status.ACTIVE) & (
        Q(agent__last_heartbeat__lt=cutoff) | Q(agent__last_heartbeat__isnull=True)
    )
    return _requeue_where(lapsed, now=now, reason="lost its heartbeat")


def release_agent(*, agent_id: int) -> list[int]:
    """Requeue, at once, every active chat of an agent who is being removed."""
    mine = Q(status=Status.ACTIVE, agent_id=agent_id)
    return _requeue_where(mine, now=timezone.now(), reason="was removed")


def _requeue_where(condition: Q, *, now: datetime, reason: str) -> list[int]:
    requeued = []
    for conversation_id in Conversation.objects.filter(condition).values_list("id", flat=True):
        with transaction.atomic():
            # Race: the agent may come back, or another worker's sweep may requeue the
            # same chat; the row lock and the re-check under it make it happen once.
            # of=("self",) keeps the join to the agent row out of the lock.
            conversation = (
                Conversation.objects.select_for_update(of=("self",))
                .filter(condition, pk=conversation_id)
                .first()
            )
            if conversation is None:
                continue
            former_agent_id = conversation.agent_id
            _back_to_queue(conversation, text=REQUEUED_TEXT, now=now)
            frame = {"type": "conversation.requeued", "conversation": conversation.id}
            realtime.broadcast_on_commit(
                [realtime.agent_group(former_agent_id)], realtime.frame_event(frame)
            )
        requeued.append(conversation.id)
        logger.warning(
            "conversation %s requeued: agent %s %s", conversation.id, former_agent_id, reason
        )
    for site_id in set(
        Conversation.objects.filter(pk__in=requeued).values_list("site_id", flat=True)
    ):
        _broadcast_queue(site_id)
        # Someone else may have room for it right now.
        assign_queued(site_ids=[site_id], now=now)
    return requeued


def _back_to_queue(
    conversation: Conversation, *, text: str, now: datetime, handed_back_by: int | None = None
) -> None:
    """Put a locked, active conversation back at the front of its site's queue, and tell
    the visitor why with a system message. The caller tells the agent it left."""
    conversation.status = Status.QUEUED
    conversation.agent = None
    conversation.queue_priority = 1
    conversation.handed_back_by_id = handed_back_by
    conversation.save(update_fields=["status", "agent", "queue_priority", "handed_back_by"])
    _append_message(conversation, sender=SenderKind.SYSTEM, body=text, now=now)


def close_idle_conversations(*, now: datetime | None = None) -> list[int]:
    """Close open conversations nobody wrote in, and whose visitor has not been seen,
    for the inactivity timeout, with a system message."""
    now = now or timezone.now()
    cutoff = now - timezone.timedelta(seconds=settings.SUPPORTDESK_INACTIVITY_TIMEOUT)
    idle = Q(status__in=Conversation.OPEN_STATUSES, last_activity_at__lt=cutoff) & Q(
        visitor__last_seen__lt=cutoff
    )
    closed = []
    for conversation_id in Conversation.objects.filter(idle).values_list("id", flat=True):
        with transaction.atomic():
            conversation = (
                Conversation.objects.select_for_update().filter(idle, pk=conversation_id).first()
            )
            if conversation is None:
                continue
            _append_message(conversation, sender=SenderKind.SYSTEM, body=IDLE_CLOSED_TEXT, now=now)
            was = _close(conversation, by=SenderKind.SYSTEM, now=now)
        _after_close(conversation, was_status=was)
        closed.append(conversation.id)
    return closed


def sweep(*, now: datetime | None = None) -> None:
    """Periodic upkeep, safe to run on every worker at once."""
    now = now or timezone.now()
    requeue_lapsed_agents(now=now)
    close_idle_conversations(now=now)
    # Anything still queued while an agent has room (a worker died mid-routing).
    assign_queued(now=now)
    # Heartbeats lapse without an event: this is where visitors hear of it.
    publish_agents_online(now=now)
    # Uploads nobody sent, with their files.
    attachments.delete_stale_pending(now=now)


# --- messages -------------------------------------------------------------------


def _lock_visitors_open_conversation(visitor_id: int) -> Conversation:
    """Lock the visitor's open conversation (call inside a transaction); `NotFound` if none."""
    conversation = (
        Conversation.objects.select_for_update()
        .filter(visitor_id=visitor_id, status__in=Conversation.OPEN_STATUSES)
        .first()
    )
    if conversation is None:
        raise NotFound
    return conversation


def _lock_agents_open_conversation(agent_id: int, conversation_id: int) -> Conversation:
    """Lock a conversation assigned to this agent (call inside a transaction): `NotFound`
    when it is not theirs, `ConversationClosed` when it is theirs but closed."""
    conversation = (
        Conversation.objects.select_for_update()
        .filter(pk=conversation_id, agent_id=agent_id)
        .first()
    )
    if conversation is None:
        raise NotFound
    if conversation.status == Status.CLOSED:
        raise ConversationClosed
    return conversation


# The message hot path. Sending a message is the one thing done hundreds of times a
# second, and the ORM spent more CPU compiling its three statements than the rest of
# the message cost together (py-spy, docs/performance.md). So they are written out as
# SQL: the everyday send as one statement (`_append_at_once`), and the full path's
# lock, update and insert as the ORM made them, with the same row lock and constraints.


def _lock_with_earlier_send(
    client_msg_id: str, *, visitor_id: int | None = None, conversation_id: int | None = None
) -> Conversation | None:
    """Lock a conversation (call inside a transaction): the visitor's open one, or the
    one with that id. It comes annotated with `earlier_message_id`: the message already
    stored in it under `client_msg_id` (the send is a retry), else None.

    The idempotency check rides on the locking SELECT, not a query of its own. Under
    the row lock nobody else can store that client_msg_id in the conversation
    meanwhile (and the unique constraint backs it). SQLite has no FOR UPDATE: there
    the IMMEDIATE transaction already holds the database's write lock.
    """
    if visitor_id is not None:
        where, params = "c.visitor_id = %s AND c.status IN (%s, %s)", [visitor_id, *OPEN]
    else:
        where, params = "c.id = %s", [conversation_id]
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    columns, converters = _conversation_columns(connection.alias)
    with _hot_cursor() as cursor:
        cursor.execute(
            f"SELECT {columns}, (SELECT m.id FROM {MESSAGE_TABLE} m"
            f" WHERE m.conversation_id = c.id AND m.client_msg_id = %s)"
            f" FROM {CONVERSATION_TABLE} c WHERE {where} ORDER BY c.id LIMIT 1{lock}",
            [client_msg_id, *params],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row[:-1])
    for index, convert in converters:
        values[index] = convert(values[index])
    conversation = Conversation.from_db(connection.alias, _CONVERSATION_FIELDS, values)
    conversation.earlier_message_id = row[-1]
    return conversation


def _lock_visitor(visitor_id: int) -> int:
    """Lock a visitor's row (inside a transaction) and return its site's id; written
    out, as the other statements of a burst's openings (docs/performance.md, change 15).
    SQLite has no FOR UPDATE: its IMMEDIATE transaction holds the write lock."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with _hot_cursor() as cursor:
        cursor.execute(f"SELECT site_id FROM {VISITOR_TABLE} WHERE id = %s{lock}", [visitor_id])
        row = cursor.fetchone()
    if row is None:
        raise Visitor.DoesNotExist
    return row[0]


def _earlier_visitor_send(visitor_id: int, client_msg_id: str) -> Message | None:
    """The visitor's latest message stored under `client_msg_id` in any of its
    conversations, or None. Almost always None (a first message): that answer is one
    written-out statement; a message found is loaded by the ORM."""
    with _hot_cursor() as cursor:
        cursor.execute(
            f"SELECT m.id FROM {MESSAGE_TABLE} m JOIN {CONVERSATION_TABLE} c"
            " ON c.id = m.conversation_id WHERE c.visitor_id = %s AND m.client_msg_id = %s"
            " AND m.sender = %s ORDER BY m.id DESC LIMIT 1",
            [visitor_id, client_msg_id, SenderKind.VISITOR],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return Message.objects.select_related("attachment", "conversation").get(pk=row[0])


def _insert_new(instance):
    """`instance.save()` for a new row of a model with an automatic id, without the
    ORM's compile: the values are prepared as the ORM prepares them (defaults,
    auto_now_add), the INSERT is written out once per model. No signals are sent (none
    are connected to the models it is used for)."""
    sql, fields = _insert_statement(type(instance), connection.alias)
    values = [
        field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields
    ]
    with _hot_cursor() as cursor:
        if connection.features.can_return_columns_from_insert:
            cursor.execute(sql + " RETURNING id", values)
            instance.pk = cursor.fetchone()[0]
        else:
            cursor.execute(sql, values)
            instance.pk = cursor.lastrowid
    instance._state.adding = False
    instance._state.db = connection.alias
    return instance


@functools.cache
def _insert_statement(model, alias: str) -> tuple[str, list]:
    quote = connections[alias].ops.quote_name
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    return f"INSERT INTO {model._meta.db_table} ({columns}) VALUES ({placeholders})", fields


def _append_at_once(
    *,
    sender: str,
    body: str,
    client_msg_id: str,
    now: datetime,
    origin_channel: str | None,
    visitor_id: int | None = None,
    agent_id: int | None = None,
    conversation_id: int | None = None,
) -> dict | None:
    """The everyday send in one statement: append a message to the visitor's open
    conversation (`visitor_id`), or to an open one assigned to `agent_id`; returns the
    wire dict. None, having stored nothing, when the send needs the full path: no such
    open conversation (a first message, a chat closed or moved meanwhile) or a
    client_msg_id already used in it (a retry).

    The conditional UPDATE takes the row lock and allocates the seq; two sends to one
    conversation queue on it, and the second re-reads the row the first committed
    (PostgreSQL re-checks the WHERE on it). On PostgreSQL the INSERT rides in the same
    statement, so the send is one round trip with no BEGIN or COMMIT of its own, where
    the full path makes five (docs/performance.md, change 9). SQLite cannot modify data
    in a WITH, so there it is two statements in one transaction.
    """
    statement = _AtOnce(
        sender=sender,
        body=body,
        client_msg_id=client_msg_id,
        created_at=connection.ops.adapt_datetimefield_value(now),
        visitor_id=visitor_id,
        agent_id=agent_id,
        conversation_id=conversation_id,
    )
    try:
        if connection.vendor == "postgresql":
            row = _execute_once(*statement.postgresql())
        else:
            with transaction.atomic(), _hot_cursor() as cursor:
                cursor.execute(statement.update, statement.update_params)
                row = cursor.fetchone()
                if row is not None:
                    cursor.execute(*statement.insert_after(row))
    except IntegrityError:
        # A retry racing its own first send stored it meanwhile: the full path finds it.
        return None
    if row is None:
        return None
    wire, recipients, event = _sent_at_once(row, statement, now, origin_channel)
    realtime.broadcast_on_commit(recipients, event)
    return wire


def sends_on_loop() -> bool:
    """Whether `post_message_on_loop` may be used here (PostgreSQL, not turned off)."""
    return loop_db.enabled()


async def post_message_on_loop(
    *,
    body: str,
    client_msg_id: str,
    origin_channel: str | None,
    visitor_id: int | None = None,
    agent_id: int | None = None,
    conversation_id: int | None = None,
) -> PostedMessage | None:
    """`_append_at_once` on PostgreSQL, run on the worker's event loop (`loop_db`)
    instead of an ORM thread: the everyday send of a visitor (`visitor_id`) or of an
    agent (`agent_id`, `conversation_id`), without attachment. None, having stored
    nothing, when it needs `post_visitor_message` / `post_agent_message` (see
    `_append_at_once`), or when the database failed it: the ORM path then decides, and
    answers errors as it always does.

    Only where `sends_on_loop()`, inside a `realtime.Outbox` its caller flushes.
    """
    now = timezone.now()
    statement = _AtOnce(
        sender=SenderKind.VISITOR if visitor_id is not None else SenderKind.AGENT,
        body=body,
        client_msg_id=client_msg_id,
        created_at=connections["default"].ops.adapt_datetimefield_value(now),
        visitor_id=visitor_id,
        agent_id=agent_id,
        conversation_id=conversation_id,
    )
    try:
        row = await loop_db.fetch_one(*statement.postgresql())
    except (psycopg.IntegrityError, loop_db.Unavailable):
        # A retry racing its own first send, or a database that failed: if the
        # statement did commit before its answer was lost, the ORM path finds the
        # message by its client_msg_id and answers it as a retry.
        return None
    if row is None:
        return None
    wire, recipients, event = _sent_at_once(row, statement, now, origin_channel)
    realtime.broadcast_committed(recipients, event)
    return PostedMessage(wire, created=True)


@dataclass(frozen=True)
class _AtOnce:
    """The statements of an everyday send (`_append_at_once`)."""

    sender: str
    body: str
    client_msg_id: str
    created_at: object  # the database's form of the time sent
    visitor_id: int | None
    agent_id: int | None
    conversation_id: int | None

    @property
    def update(self) -> str:
        return _at_once_sql(self.visitor_id is not None)[0]

    @property
    def update_params(self) -> list:
        if self.visitor_id is not None:
            which = [self.visitor_id, *OPEN]
        else:
            which = [self.conversation_id, self.agent_id, *OPEN]
        return [self.created_at, *which, self.client_msg_id]

    @property
    def _insert_params(self) -> list:
        return [self.sender, self.agent_id, self.body, self.client_msg_id, self.created_at]

    def postgresql(self) -> tuple[str, list]:
        """Both in one statement."""
        return _at_once_sql(self.visitor_id is not None)[1], (
            self.update_params + self._insert_params
        )

    def insert_after(self, row: tuple) -> tuple[str, list]:
        """The INSERT on its own, after the UPDATE returned `row` (SQLite)."""
        return _at_once_sql(self.visitor_id is not None)[2], [*self._insert_params, row[0]]


@functools.cache
def _at_once_sql(by_visitor: bool) -> tuple[str, str, str]:
    """`_AtOnce`'s SQL for a visitor's send or an agent's, built once: (the UPDATE, the
    UPDATE and INSERT in one statement, the INSERT after the UPDATE)."""
    if by_visitor:
        where = "visitor_id = %s AND status IN (%s, %s)"
        counters = "agent_unread = agent_unread + 1"
    else:
        where = "id = %s AND agent_id = %s AND status IN (%s, %s)"
        # Answering means having read everything before the answer.
        counters = "agent_read_seq = last_seq + 1, agent_unread = 0"
    update = (
        f"UPDATE {CONVERSATION_TABLE} SET last_seq = last_seq + 1, last_activity_at = %s,"
        f" {counters} WHERE {where} AND NOT EXISTS (SELECT 1 FROM {MESSAGE_TABLE} m"
        f" WHERE m.conversation_id = {CONVERSATION_TABLE}.id AND m.client_msg_id = %s)"
        " RETURNING id, last_seq, visitor_id, agent_id"
    )
    insert = (
        f"INSERT INTO {MESSAGE_TABLE} ({', '.join(_MESSAGE_COLUMNS)})"
        " SELECT id, last_seq, %s, %s, %s, %s, %s FROM "
    )
    both = (
        f"WITH c AS ({update}), m AS ({insert}c) SELECT id, last_seq, visitor_id, agent_id FROM c"
    )
    return update, both, f"{insert}{CONVERSATION_TABLE} WHERE id = %s"


def _sent_at_once(
    row: tuple, statement: _AtOnce, now: datetime, origin_channel: str | None
) -> tuple[dict, tuple[str, ...], dict]:
    """The wire dict of a message stored by `_AtOnce`, who hears it, and the event."""
    conversation, seq, visitor, agent = row
    wire = selectors.message_wire(
        conversation=conversation,
        seq=seq,
        sender=statement.sender,
        body=statement.body,
        client_msg_id=statement.client_msg_id,
        sent_at=now,
    )
    event = realtime.frame_event({"type": "message", **wire}, skip_channel=origin_channel)
    return wire, _participants(visitor, agent), event


def _execute_once(sql: str, params: list) -> tuple | None:
    """Run one statement as a transaction of its own and return its first row. Inside
    an outer transaction (a test's) a savepoint stands in, so that a failed statement
    leaves the outer one usable, as it would leave no trace on its own."""
    savepoint = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    with savepoint, _hot_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _hot_cursor():
    """A cursor for the send path's statements. On PostgreSQL it binds parameters
    on the server, so psycopg prepares each statement once per connection
    (`PREPARE_AFTER` runs) and PostgreSQL stops parsing and planning it for every
    message; the ORM's own cursors keep Django's client-side binding. Measured in
    docs/performance.md, change 7."""
    if connection.vendor != "postgresql" or not settings.SUPPORTDESK_PREPARED_STATEMENTS:
        return connection.cursor()
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:  # Django turns preparing off per connection
        raw.prepare_threshold = PREPARE_AFTER
    from django.db.backends.postgresql.base import ServerBindingCursor

    with connection.wrap_database_errors:
        return connection._prepare_cursor(ServerBindingCursor(raw))


# Executions of one statement on a connection before psycopg prepares it.
PREPARE_AFTER = 2


# The conversation row as the lock query reads it: every concrete field, in order.
_CONVERSATION_FIELDS = [field.attname for field in Conversation._meta.concrete_fields]


@functools.cache
def _conversation_columns(alias: str) -> tuple[str, list[tuple[int, Callable]]]:
    """The lock query's column list and the value converters the backend needs (SQLite
    returns datetimes as text), worked out once instead of by a RawQuerySet per send:
    that was 5 % of a worker's CPU under load (docs/performance.md, change 7)."""
    db = connections[alias]
    converters = []
    for index, field in enumerate(Conversation._meta.concrete_fields):
        column = field.get_col("c")
        funcs = db.ops.get_db_converters(column) + field.get_db_converters(db)
        if funcs:
            converters.append((index, functools.partial(_convert, funcs, column, db)))
    columns = ", ".join(f"c.{field.column}" for field in Conversation._meta.concrete_fields)
    return columns, converters


def _convert(funcs: list[Callable], column, db, value):
    for func in funcs:
        value = func(value, column, db)
    return value


def _earlier_send(conversation: Conversation) -> Message | None:
    """The retried message of a conversation from `_lock_with_earlier_send`, if any."""
    if conversation.earlier_message_id is None:
        return None
    return Message.objects.select_related("attachment").get(pk=conversation.earlier_message_id)


def _append_message(
    conversation: Conversation,
    *,
    sender: str,
    body: str,
    now: datetime,
    client_msg_id: str | None = None,
    sender_agent_id: int | None = None,
    origin_channel: str | None = None,
    attachment_id: int | None = None,
) -> dict:
    """Append to a conversation whose row the caller has locked; returns the wire dict.

    The row lock taken by the caller is what makes `seq` gapless and ordered: two
    workers appending at once queue on it, and each reads the other's last_seq.
    A message with an attachment costs two more queries (claim it, link it).
    """
    attachment = None
    if attachment_id is not None:
        attachment = _claim_attachment(
            conversation, attachment_id, sender=sender, sender_agent_id=sender_agent_id
        )
    conversation.last_seq += 1
    conversation.last_activity_at = now
    fields = ["last_seq", "last_activity_at"]
    if sender == SenderKind.VISITOR:
        conversation.agent_unread += 1
        fields.append("agent_unread")
    elif sender == SenderKind.AGENT:
        # Answering means having read everything before the answer.
        conversation.agent_read_seq = conversation.last_seq
        conversation.agent_unread = 0
        fields += ["agent_read_seq", "agent_unread"]
    _update_conversation(conversation, fields)
    message = _insert_new(
        Message(
            conversation=conversation,
            seq=conversation.last_seq,
            sender=sender,
            sender_agent_id=sender_agent_id,
            body=body,
            client_msg_id=client_msg_id,
            created_at=now,
        )
    )
    if attachment is not None:
        attachment.message = message
        attachment.save(update_fields=["message"])
        # Known already: message_dict must not look it up again.
        Message.attachment.related.set_cached_value(message, attachment)
    wire = selectors.message_dict(message)
    realtime.broadcast_on_commit(
        _participant_groups(conversation),
        realtime.frame_event({"type": "message", **wire}, skip_channel=origin_channel),
    )
    return wire


def _claim_attachment(
    conversation: Conversation, attachment_id: int, *, sender: str, sender_agent_id: int | None
) -> Attachment:
    """Lock the sender's unsent upload in this (locked) conversation; else
    `AttachmentNotFound`. Two sends naming one upload queue on the conversation's lock,
    and the second finds it sent; the row lock keeps the pending-upload sweep
    (attachments.delete_stale_pending) from deleting it under a sending message."""
    mine = Attachment.objects.filter(
        pk=attachment_id, conversation=conversation, message__isnull=True, uploaded_by=sender
    )
    if sender == SenderKind.AGENT:
        mine = mine.filter(uploaded_by_agent_id=sender_agent_id)
    attachment = mine.select_for_update().first()
    if attachment is None:
        raise AttachmentNotFound
    return attachment


def _update_conversation(conversation: Conversation, fields: list[str]) -> None:
    """`conversation.save(update_fields=fields)` without the ORM's compile (hot path)."""
    ops = connection.ops
    values = [
        ops.adapt_datetimefield_value(value) if isinstance(value, datetime) else value
        for value in (getattr(conversation, name) for name in fields)
    ]
    assignments = ", ".join(f"{name} = %s" for name in fields)
    with _hot_cursor() as cursor:
        cursor.execute(
            f"UPDATE {CONVERSATION_TABLE} SET {assignments} WHERE id = %s",
            [*values, conversation.pk],
        )


_MESSAGE_COLUMNS = (
    "conversation_id",
    "seq",
    "sender",
    "sender_agent_id",
    "body",
    "client_msg_id",
    "created_at",
)


def _participant_groups(conversation: Conversation) -> tuple[str, ...]:
    """Who hears a conversation's messages: its visitor's tabs and its agent's, if any."""
    return _participants(conversation.visitor_id, conversation.agent_id)


def _participants(visitor_id: int, agent_id: int | None) -> tuple[str, ...]:
    """`_participant_groups` from the conversation's ids (the send path has no row)."""
    if agent_id is None:
        return (realtime.visitor_group(visitor_id),)
    return (realtime.visitor_group(visitor_id), realtime.agent_group(agent_id))
