"""What participants send into a conversation: messages, internal notes, typing, reads.

`post_message` is the one way in for a visitor's and an agent's message alike: it
tries the everyday one-statement send, else takes the conversation's row lock, answers
a retry with the first message, and for a visitor with no open chat opens one (queued,
or assigned at once when an agent is free).
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from .. import events, selectors
from ..errors import (
    AttachmentNotFound,
    ClientMsgIdTaken,
    ConversationClosed,
    NotFound,
    SeqOutOfRange,
)
from ..models import Conversation, Note, SenderKind, Visitor
from ..store import loop, sql
from . import bots, messages, routing
from .actors import Actor, lock_open_conversation
from .messages import PostedMessage

Status = Conversation.Status


@dataclass(frozen=True)
class EmailOrigin:
    """A visitor's message that came by email: the conversation it opens is an email
    conversation with this subject; the one it goes into shows this sender (the From
    header) and whether the upstream server's SPF/DKIM check vouched for it."""

    subject: str
    sender_address: str
    sender_verified: bool


def one_statement_send() -> bool:
    """Whether the everyday send may be one autocommit statement: not when a subscriber
    must write in the message's own transaction (an outbox)."""
    return not events.has_in_transaction_subscribers(events.MessageCreated)


def sends_on_loop() -> bool:
    """Whether `post_message_on_loop` may be used here (PostgreSQL, not turned off)."""
    return loop.enabled() and one_statement_send()


async def post_message_on_loop(
    sender: Actor,
    *,
    body: str,
    client_msg_id: str,
    conversation_id: int | None = None,
    origin: str | None = None,
) -> PostedMessage | None:
    """The everyday send on the worker's event loop, without attachment (where
    `sends_on_loop()`). None, having stored nothing, when the message needs
    `post_message` (a first message, a retry, a database that failed it): that path
    decides and answers errors as it always does."""
    draft = messages.Draft(sender, body, client_msg_id, conversation_id, origin)
    return await messages.append_on_loop(draft, now=timezone.now())


def post_message(
    sender: Actor,
    *,
    client_msg_id: str,
    body: str,
    conversation_id: int | None = None,
    origin: str | None = None,
    attachment_id: int | None = None,
    before_opening: Callable[[], None] | None = None,
    try_at_once: bool = True,
    email: EmailOrigin | None = None,
) -> PostedMessage:
    """Store a message: a visitor's into its open conversation (opening one if none is
    open), an agent's into `conversation_id`, which must be assigned to it.

    `attachment_id` names the sender's unsent upload in that conversation
    (`AttachmentNotFound` otherwise). `before_opening` runs just before a conversation
    would be opened (the shared limit on new conversations); raising there stores
    nothing. `try_at_once=False`: the caller has just tried the everyday statement
    (`post_message_on_loop`), or expects this message to open a chat: it needs the full
    path, which for a visitor then starts with the visitor's row lock.

    `email`: a visitor's message that came by email (the email channel's receiver, the
    offline form of a site with an inbound address): a conversation it opens is an
    email conversation, and the one it goes into records its sender.
    """
    now = timezone.now()
    draft = messages.Draft(sender, body, client_msg_id, conversation_id, origin)
    if email is not None:
        try_at_once = False  # the conversation's row changes too: the full path
    if attachment_id is None and try_at_once and one_statement_send():
        posted = messages.append_at_once(draft, now=now)
        if posted is not None:
            return posted
    opened = None
    with transaction.atomic():
        conversation, visitor = messages.lock_conversation(draft, check_first=try_at_once)
        if conversation is None:
            earlier = messages.sent_before_by_visitor(sender.visitor_id, client_msg_id)
            if earlier is not None:
                return messages.posted_again(earlier, earlier.conversation)
            if attachment_id is not None:
                # Uploads go into an open conversation: a new one holds none.
                raise AttachmentNotFound
            if before_opening is not None:
                # Under the visitor's row lock (and on SQLite the write lock): a slow
                # limit store holds them up to ratelimits.REDIS_TIMEOUT, on this rare
                # path only.
                before_opening()
            conversation = opened = _open_conversation(visitor, now, email)
        earlier = messages.sent_before(conversation)
        if earlier is not None and _wrote(sender, earlier):
            # A retry, even after an agent's chat moved on: the same ack again.
            return messages.posted_again(earlier, conversation)
        if not sender.is_visitor and conversation.agent_id != sender.agent_id:
            raise NotFound
        if earlier is not None:
            raise ClientMsgIdTaken
        if conversation.status == Status.CLOSED:
            raise ConversationClosed
        if email is not None and opened is None:
            _record_email_sender(conversation, email)
        posted = messages.append_message(
            conversation,
            sender=sender.kind,
            sender_agent_id=sender.agent_id,
            author_name=getattr(conversation, "agent_name", None),
            body=body,
            client_msg_id=client_msg_id,
            origin=origin,
            now=now,
            attachment_id=attachment_id,
        )
        routed = opened is not None and opened.status == Status.QUEUED
        placed = routed and routing.assign_at_once(opened, now=now)
    if routed and not placed:
        routing.route_new_conversation(opened, now=now)
    return posted


def _open_conversation(visitor: Visitor, now, email: EmailOrigin | None = None) -> Conversation:
    site_id = visitor.site_id
    # With the site's bot on, the bot answers a chat first: it is neither queued nor
    # routed until it is handed off (bots.hand_off). Mail goes to people.
    with_bot = email is None and bots.answers_first(site_id)
    conversation = Conversation(
        site_id=site_id,
        visitor_id=visitor.pk,
        status=Status.BOT if with_bot else Status.QUEUED,
        created_at=now,
        queued_at=None if with_bot else now,
        last_activity_at=now,
    )
    if email is not None:
        conversation.channel = Conversation.Channel.EMAIL
        conversation.subject = email.subject[:300]
        conversation.sender_address = email.sender_address[:320]
        conversation.sender_verified = email.sender_verified
    conversation = sql.insert_new(conversation)
    conversation.visitor = visitor  # locked by the caller: routing shows it as it is
    conversation.earlier_message_id = None  # new: nothing sent in it yet
    events.emit_on_commit(
        events.ConversationCreated(**events.about(conversation), at=conversation.created_at)
    )
    return conversation


def _record_email_sender(conversation: Conversation, email: EmailOrigin) -> None:
    """The latest mail's sender, on the conversation (locked by the caller). A mail into
    a chat makes no email conversation of it: the chat's channel stays."""
    if conversation.channel != Conversation.Channel.EMAIL:
        return
    address, verified = email.sender_address[:320], email.sender_verified
    if (conversation.sender_address, conversation.sender_verified) != (address, verified):
        Conversation.objects.filter(pk=conversation.pk).update(
            sender_address=address, sender_verified=verified
        )
        conversation.sender_address, conversation.sender_verified = address, verified


def _wrote(sender: Actor, message) -> bool:
    if sender.is_visitor:
        return message.sender == SenderKind.VISITOR
    return message.sender_agent_id == sender.agent_id


@dataclass(frozen=True)
class PostedNote:
    note: dict
    created: bool


def post_note(*, agent_id: int, conversation_id: int, client_msg_id: str, body: str) -> PostedNote:
    """Store an internal note on a conversation assigned to this agent. Notes go to the
    agent's sockets only, never to the visitor, and take no seq."""
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
        events.emit_on_commit(events.NoteCreated(note=wire, agent_id=agent_id))
    return PostedNote(wire, created=True)


def relay_typing(
    actor: Actor, *, active: bool, conversation_id: int | None = None, text: str | None = None
) -> None:
    """Tell the other side that `actor` started or stopped typing. `text` (sneak peek) is
    a visitor's unsent draft: the caller passes it only when the site allows it; it goes
    to the assigned agent only and is never stored."""
    if actor.is_visitor:
        conversation = selectors.open_conversation(actor.visitor_id)
        if conversation is None:
            raise NotFound
        if conversation.agent_id is None:
            return  # nobody to tell yet
    else:
        conversation = selectors.conversation_for_agent(actor.agent_id, conversation_id)
        if conversation.status == Status.CLOSED:
            raise ConversationClosed
        text = None
    events.emit_on_commit(
        events.TypingChanged(
            **events.about(conversation),
            by=actor.kind,
            active=active,
            text=text if active else None,
        )
    )


def mark_read(
    actor: Actor, *, seq: int, conversation_id: int | None = None, origin: str | None = None
) -> None:
    """`actor` has read its open conversation up to `seq`; the other side and the
    actor's other tabs hear of it. An agent's unread count is counted again from it."""
    with transaction.atomic():
        conversation = lock_open_conversation(actor, conversation_id)
        if seq > conversation.last_seq:
            raise SeqOutOfRange
        if actor.is_visitor:
            if seq <= conversation.visitor_read_seq:
                return
            conversation.visitor_read_seq = seq
            conversation.save(update_fields=["visitor_read_seq"])
        else:
            if seq <= conversation.agent_read_seq:
                return
            conversation.agent_read_seq = seq
            conversation.agent_unread = conversation.messages.filter(
                seq__gt=seq, sender=SenderKind.VISITOR
            ).count()
            conversation.save(update_fields=["agent_read_seq", "agent_unread"])
        events.emit_on_commit(
            events.ReadUpTo(**events.about(conversation), by=actor.kind, seq=seq, origin=origin)
        )
