"""A site's bot in a conversation: whether it answers a new chat first, its answers, the
hand-off to a person, and the visitor's verdict on an answer.

The core knows no bot: a capability app (`kb`) registers itself with
`register_first_responder` and posts through `post_bot_message`. A chat the bot answers
has status `bot`: it is open, but neither queued nor routed, until `hand_off` routes it
like a new chat with its history intact.
"""

import logging
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from .. import events, selectors
from ..errors import NotFound, NotWithBot
from ..models import Conversation, Message, SenderKind
from . import messages, routing
from .actors import Actor, lock_open_conversation
from .messages import PostedMessage

logger = logging.getLogger(__name__)
Status = Conversation.Status

# site id -> whether a bot answers that site's new chats first. Registered by the bot's
# app in its ready(); none registered: every chat is routed at once.
_first_responders: list[Callable[[int], bool]] = []


def register_first_responder(answers_first: Callable[[int], bool]) -> None:
    """`answers_first(site_id)` is asked, inside the transaction that opens a chat,
    whether a bot takes the chat first; registering twice has no effect."""
    if answers_first not in _first_responders:
        _first_responders.append(answers_first)


def unregister_first_responder(answers_first: Callable[[int], bool]) -> None:
    if answers_first in _first_responders:
        _first_responders.remove(answers_first)


def answers_first(site_id: int) -> bool:
    return any(answers(site_id) for answers in _first_responders)


def post_bot_message(
    *,
    conversation_id: int,
    body: str,
    sources: list[dict],
    client_msg_id: str | None = None,
    code: str = "",
) -> PostedMessage:
    """Store the bot's answer in a conversation the bot still has. `NotWithBot` (nothing
    stored) once it was handed off or closed: race, the visitor's "Talk to a person"
    and a slow answer; the row lock orders them, and the answer that lost is dropped.
    `client_msg_id` makes it idempotent like any send (an answer posted twice by two
    workers hearing the same message is stored once). `code`: a sentence of
    chat/system_messages.py that `body` is the English of, for each reader's language."""
    now = timezone.now()
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().filter(pk=conversation_id).first()
        if conversation is None or conversation.status != Status.BOT:
            raise NotWithBot
        if client_msg_id is not None:
            earlier = Message.objects.filter(
                conversation_id=conversation_id, client_msg_id=client_msg_id
            ).first()
            if earlier is not None and earlier.sender == SenderKind.BOT:
                return messages.posted_again(earlier, conversation)
            if earlier is not None:
                # The visitor chose that id for a message of its own: the answer is
                # stored without one rather than lost.
                client_msg_id = None
        return messages.append_message(
            conversation,
            sender=SenderKind.BOT,
            body=body,
            client_msg_id=client_msg_id,
            sources=sources,
            now=now,
            code=code,
        )


def hand_off(
    *,
    visitor_id: int | None = None,
    conversation_id: int | None = None,
    by: str = SenderKind.VISITOR,
) -> bool:
    """Route a chat the bot has to a person, like a new chat, with its history: the
    visitor's open one (`visitor_id`, the `handoff` frame) or `conversation_id` (the bot
    giving up: `by="bot"`). False, changing nothing, when the chat is already with
    people (queued or with an agent); `NotFound` when the visitor has no open chat.

    Race: the bot's answer and the hand-off may come at once; the row lock orders them,
    and an answer after the hand-off is refused (`post_bot_message`)."""
    now = timezone.now()
    actor = Actor.visitor(visitor_id) if visitor_id is not None else Actor.system()
    with transaction.atomic():
        try:
            conversation = lock_open_conversation(actor, conversation_id)
        except NotFound:
            if visitor_id is None:
                return False
            raise
        if conversation.status != Status.BOT:
            return False
        conversation.status = Status.QUEUED
        conversation.queued_at = now
        conversation.save(update_fields=["status", "queued_at"])
        events.emit_on_commit(events.BotHandedOff(**events.about(conversation), by=by, at=now))
        placed = routing.assign_at_once(conversation, now=now)
    logger.info("conversation %s handed off by the %s", conversation.id, by)
    if not placed:
        routing.route_new_conversation(conversation, now=now)
    return True


def rate_bot_answer(*, visitor_id: int, seq: int, helpful: bool) -> None:
    """The visitor's 👍 (`helpful`) or 👎 on one bot answer (by seq) of its latest
    conversation; a second verdict replaces the first. Subscribers store it inside this
    transaction (`BotAnswerRated` is for in-transaction subscribers). `NotFound` when
    that message is not the bot's in the visitor's latest conversation."""
    with transaction.atomic():
        conversation = selectors.latest_conversation(visitor_id)
        if conversation is None:
            raise NotFound
        message = Message.objects.filter(
            conversation_id=conversation.id, seq=seq, sender=SenderKind.BOT
        ).first()
        if message is None:
            raise NotFound
        events.emit_on_commit(
            events.BotAnswerRated(
                **events.about(conversation), seq=seq, message_id=message.id, helpful=helpful
            )
        )
