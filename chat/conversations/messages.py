"""The message store: appending a message to a conversation, and finding one sent before.

Three ways to append, one rule: the conversation's row lock allocates the next seq, so
seqs are gapless and in commit order, and a client_msg_id is stored once per
conversation (a retry gets the first message back).
- `append_at_once`: the everyday send, one statement on an ORM thread (two on SQLite).
- `append_on_loop`: the same statement on the worker's event loop (PostgreSQL).
- `append_message`: the full path, into a conversation the caller has locked (first
  messages, retries, attachments, system messages).
Each announces `MessageCreated` once the message is committed.
"""

from datetime import datetime

import msgspec
import psycopg
from django.db import IntegrityError, connection, transaction

from .. import events, selectors
from ..errors import AttachmentNotFound, NotFound
from ..models import Attachment, Conversation, Message, SenderKind, Visitor
from ..store import durable, loop, sql
from .actors import Actor


class PostedMessage(msgspec.Struct, frozen=True, gc=False):
    """A message as stored: `message` is its wire shape. `created` is False for a retry,
    which the caller answers with the first ack (and rings the participants, named by
    `visitor_id` and `agent_id`, again: the first ring may have been lost)."""

    message: dict
    created: bool
    visitor_id: int
    agent_id: int | None

    @property
    def conversation_id(self) -> int:
        return self.message["conversation"]

    @property
    def seq(self) -> int:
        return self.message["seq"]


class Draft(msgspec.Struct, frozen=True, gc=False):
    """A message to store: who sends it, where (an agent names the conversation, a
    visitor's goes to its open one), what, and the socket it came from (`origin`)."""

    sender: Actor
    body: str
    client_msg_id: str
    conversation_id: int | None = None
    origin: str | None = None


def append_at_once(draft: Draft, *, now: datetime) -> PostedMessage | None:
    """The everyday send: the visitor's message into its open conversation, or an
    agent's into an open one assigned to it, unless that client_msg_id is used there.
    None, having stored nothing, when it needs the full path: no such open
    conversation (a first message, a chat closed or moved meanwhile) or a retry.

    On PostgreSQL it is one statement with no BEGIN or COMMIT of its own, where the full
    path makes five; on SQLite two, in one transaction."""
    statement = _statement(draft, connection.ops.adapt_datetimefield_value(now))
    try:
        if connection.vendor == "postgresql":
            row = sql.execute_once(*statement.both)
        else:
            with transaction.atomic(), sql.hot_cursor() as cursor:
                cursor.execute(*statement.update)
                row = cursor.fetchone()
                if row is not None:
                    cursor.execute(*statement.insert_after(row))
                    durable.record_message(
                        site_id=row[4], conversation_id=row[0], message_id=cursor.lastrowid, now=now
                    )
    except IntegrityError:
        # A retry racing its own first send stored it meanwhile: the full path finds it.
        return None
    return _announced(row, draft, now, events.emit_on_commit)


async def append_on_loop(draft: Draft, *, now: datetime) -> PostedMessage | None:
    """`append_at_once` on PostgreSQL, run on the worker's event loop (chat/store/loop.py)
    instead of an ORM thread. None also when the database failed it: if the statement
    did commit before its answer was lost, the full path finds the message by its
    client_msg_id and answers it as a retry.

    The time goes to psycopg as it is (what Django's PostgreSQL backend passes too):
    asking `connections["default"]` for its adapter here cost a new DatabaseWrapper
    per task that sends (each agent lane's task is new), 5 % of a worker's CPU
    (docs/performance.md, change 29)."""
    statement = _statement(draft, now)
    try:
        row = await loop.fetch_one(*statement.both)
    except (psycopg.IntegrityError, loop.Unavailable):
        return None
    return _announced(row, draft, now, events.emit_committed)


def _statement(draft: Draft, created_at: datetime | str) -> sql.AppendAtOnce:
    return sql.AppendAtOnce(
        sender=draft.sender.kind,
        body=draft.body,
        client_msg_id=draft.client_msg_id,
        created_at=created_at,
        visitor_id=draft.sender.visitor_id,
        agent_id=draft.sender.agent_id,
        conversation_id=draft.conversation_id,
    )


def _announced(row: tuple | None, draft: Draft, now: datetime, emit) -> PostedMessage | None:
    """The message a send statement stored (its `row`; None: it stored nothing),
    announced with `emit`."""
    if row is None:
        return None
    conversation_id, seq, visitor_id, agent_id, site_id, author_name, channel, status = row
    wire = selectors.message_wire(
        conversation=conversation_id,
        seq=seq,
        sender=draft.sender.kind,
        body=draft.body,
        client_msg_id=draft.client_msg_id,
        sent_at=now,
        agent=selectors.author(agent_id, author_name),
    )
    emit(
        events.MessageCreated(
            conversation_id=conversation_id,
            site_id=site_id,
            visitor_id=visitor_id,
            agent_id=agent_id,
            message=wire,
            origin=draft.origin,
            channel=channel,
            with_bot=status == Conversation.Status.BOT,
        )
    )
    return PostedMessage(wire, True, visitor_id, agent_id)


def append_message(
    conversation: Conversation,
    *,
    sender: str,
    body: str,
    now: datetime,
    client_msg_id: str | None = None,
    sender_agent_id: int | None = None,
    author_name: str | None = None,
    origin: str | None = None,
    attachment_id: int | None = None,
    sources: list[dict] | None = None,
    code: str = "",
    params: dict | None = None,
) -> PostedMessage:
    """Append to a conversation whose row the caller has locked (the full path). An
    agent's message names its author: `author_name`, the agent's display name; a bot's
    the articles it answered from, `sources`. A system message's `code` and `params` say
    its `body` for readers of other languages (chat/system_messages.py).

    The row lock taken by the caller is what makes `seq` gapless and ordered: two
    workers appending at once queue on it, and each reads the other's last_seq.
    A message with an attachment costs two more queries (claim it, link it)."""
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
    sql.update_fields(conversation, fields)
    message = sql.insert_new(
        Message(
            conversation=conversation,
            seq=conversation.last_seq,
            sender=sender,
            sender_agent_id=sender_agent_id,
            body=body,
            client_msg_id=client_msg_id,
            created_at=now,
            sources=sources,
            system_code=code,
            system_params=params or None,
        )
    )
    durable.record_message(
        site_id=conversation.site_id,
        conversation_id=conversation.id,
        message_id=message.pk,
        now=now,
    )
    message.author_name = author_name
    if attachment is not None:
        attachment.message = message
        attachment.save(update_fields=["message"])
        # Known already: message_dict must not look it up again.
        Message.attachment.related.set_cached_value(message, attachment)
    wire = selectors.message_dict(message)
    events.emit_on_commit(
        events.MessageCreated(
            **events.about(conversation),
            message=wire,
            origin=origin,
            channel=conversation.channel,
            with_bot=conversation.status == Conversation.Status.BOT,
        )
    )
    return PostedMessage(wire, True, conversation.visitor_id, conversation.agent_id)


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


def lock_conversation(
    draft: Draft, *, check_first: bool = True
) -> tuple[Conversation | None, Visitor | None]:
    """Lock the conversation `draft` goes into (inside a transaction), annotated with
    the message already stored there under its client_msg_id (`sent_before`).

    An agent's: the one it names (`NotFound` if there is none; whether it may write
    there is the caller's to judge, after a retry was answered). A visitor's: its open
    one, else (None, the visitor) with the visitor's row locked, for the caller to
    open one. `check_first=False` skips the first look for an open conversation (the
    caller expects none)."""
    if not draft.sender.is_visitor:
        conversation = sql.lock_conversation_with_earlier_send(
            draft.client_msg_id, conversation_id=draft.conversation_id
        )
        if conversation is None:
            raise NotFound
        return conversation, None
    visitor_id = draft.sender.visitor_id
    if check_first:
        conversation = sql.lock_conversation_with_earlier_send(
            draft.client_msg_id, visitor_id=visitor_id
        )
        if conversation is not None:
            return conversation, None
    # Race: two tabs of one visitor may open a conversation at once; the row lock on
    # Visitor serialises them and the second finds the first's.
    visitor = sql.load_visitor(visitor_id, lock=True)
    conversation = sql.lock_conversation_with_earlier_send(
        draft.client_msg_id, visitor_id=visitor_id
    )
    return conversation, visitor


def sent_before(conversation: Conversation) -> Message | None:
    """The message a conversation locked by `sql.lock_conversation_with_earlier_send`
    already holds under the sent client_msg_id (the send is a retry), if any."""
    if conversation.earlier_message_id is None:
        return None
    return Message.objects.select_related("attachment", "sender_agent").get(
        pk=conversation.earlier_message_id
    )


def sent_before_by_visitor(visitor_id: int, client_msg_id: str) -> Message | None:
    """The visitor's latest message under `client_msg_id` in any of its conversations:
    a retry of a message whose conversation closed since is not a new chat."""
    message_id = sql.earlier_visitor_message_id(visitor_id, client_msg_id)
    if message_id is None:
        return None
    return Message.objects.select_related("attachment", "conversation", "sender_agent").get(
        pk=message_id
    )


def posted_again(message: Message, conversation: Conversation) -> PostedMessage:
    """A retry's answer: the first message, not stored again."""
    return PostedMessage(
        selectors.message_dict(message), False, conversation.visitor_id, conversation.agent_id
    )
