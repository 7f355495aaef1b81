"""How conversations end, or go back to the queue: closing by either side or the
system, requeueing the chats of agents who were lost, closing idle chats, and the sweep
that does the periodic part on every worker.

A closed active chat frees a slot, which goes to the queue at once; a closed queued one
moves everyone behind it up.
"""

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .. import attachments, events, selectors
from ..models import Assignment, Conversation, SenderKind
from . import calls, messages, presence, queue, routing
from .actors import Actor, lock_open_conversation

logger = logging.getLogger(__name__)
Status = Conversation.Status

REQUEUED_TEXT = "Your agent was disconnected. You are back at the front of the queue."
IDLE_CLOSED_TEXT = "This conversation was closed after a period of inactivity."


def close_conversation(actor: Actor, *, conversation_id: int | None = None) -> None:
    """Close the conversation `actor` may close: a visitor its open one, an agent one
    assigned to it, the system (an operator) any open one. Both sides are told who
    closed it; a freed slot goes to the queue."""
    with transaction.atomic():
        conversation = lock_open_conversation(actor, conversation_id)
        was = _close(conversation, by=actor.kind, now=timezone.now())
    _after_close(conversation, was_status=was)


def _close(conversation: Conversation, *, by: str, now: datetime) -> str:
    """Close a locked, open conversation; returns the status it had."""
    was = conversation.status
    # A call going on ends first: its line goes into the transcript before the close.
    calls.end_with_conversation(conversation, by=by, now=now)
    if was == Status.ACTIVE:
        routing.end_turn(conversation, Assignment.Ended.CLOSED, now=now)
    conversation.status = Status.CLOSED
    conversation.closed_at = now
    conversation.closed_by = by
    conversation.save(update_fields=["status", "closed_at", "closed_by"])
    events.emit_on_commit(events.ConversationClosed(**events.about(conversation), by=by, at=now))
    logger.info("conversation %s closed by %s", conversation.id, by)
    return was


def _after_close(conversation: Conversation, *, was_status: str) -> None:
    if was_status == Status.ACTIVE:
        # A finished chat changes how long chats take: the reading of the slot it frees
        # (the oldest queued conversation this agent serves takes it) tells the new
        # waits, or, with nobody placed, a reading of its own where they changed.
        queue.forget_basis(conversation.site_id)
        routing.assign_queued(site_ids=selectors.agent_site_ids(conversation.agent_id))
        queue.basis_changed([conversation.site_id])
    elif was_status == Status.QUEUED:
        # Everyone behind it moved up one. (A chat the bot had was in no queue.)
        queue.changed(conversation.site_id)


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
            routing.back_to_queue(
                conversation,
                text=REQUEUED_TEXT,
                code="requeued",
                now=now,
                ended=Assignment.Ended.REQUEUED,
            )
            events.emit_on_commit(
                events.ConversationRequeued(
                    **events.about(conversation), former_agent_id=former_agent_id
                )
            )
        requeued.append(conversation.id)
        logger.warning(
            "conversation %s requeued: agent %s %s", conversation.id, former_agent_id, reason
        )
    for site_id in set(
        Conversation.objects.filter(pk__in=requeued).values_list("site_id", flat=True)
    ):
        queue.changed(site_id)
        # Someone else may have room for it right now.
        routing.assign_queued(site_ids=[site_id], now=now)
    return requeued


def close_idle_conversations(*, now: datetime | None = None) -> list[int]:
    """Close open chats nobody wrote in, and whose visitor has not been seen, for the
    inactivity timeout, with a system message. Email conversations are left open: an
    answer by mail may take days, and an agent closes them."""
    now = now or timezone.now()
    cutoff = now - timezone.timedelta(seconds=settings.SUPPORTDESK_INACTIVITY_TIMEOUT)
    idle = (
        Q(status__in=Conversation.OPEN_STATUSES, last_activity_at__lt=cutoff)
        & Q(visitor__last_seen__lt=cutoff)
        & ~Q(channel=Conversation.Channel.EMAIL)
    )
    closed = []
    for conversation_id in Conversation.objects.filter(idle).values_list("id", flat=True):
        with transaction.atomic():
            conversation = (
                Conversation.objects.select_for_update().filter(idle, pk=conversation_id).first()
            )
            if conversation is None:
                continue
            messages.append_message(
                conversation,
                sender=SenderKind.SYSTEM,
                body=IDLE_CLOSED_TEXT,
                now=now,
                code="idle_closed",
            )
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
    routing.assign_queued(now=now)
    # Heartbeats lapse without an event: this is where visitors hear of it, and where
    # the queues' wait estimates follow the agents who came and went.
    presence.publish_agents_online(now=now)
    queue.basis_changed(None)
    # Invitations whose worker died before their timer, calls left behind by a move.
    calls.sweep(now=now)
    # Uploads nobody sent, with their files.
    attachments.delete_stale_pending(now=now)
