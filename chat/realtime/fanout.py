"""Real-time fan-out: a subscriber of the domain events that turns each into the frames
docs/protocol.md promises and sends them to the sockets that may see them.

Here, and only here, is decided who hears what (`groups`): a conversation's frames go
to its visitor's and its agent's sockets, never further. Every handler runs after the
change committed (chat/events.py).
"""

from .. import events
from ..conversations.queue import queue_clock
from ..protocol import outbound
from . import groups, outbox
from .groups import agent_group, frame_event, participants, visitor_group


def _frame(to, frame, *, skip: str | None = None) -> None:
    outbox.send(to, frame_event(frame, skip_channel=skip))


def message_created(event: events.MessageCreated) -> None:
    _frame(
        participants(event.visitor_id, event.agent_id),
        outbound.message(event.message),
        skip=event.origin,
    )


def note_created(event: events.NoteCreated) -> None:
    _frame([agent_group(event.agent_id)], outbound.note(event.note))


def conversation_assigned(event: events.ConversationAssigned) -> None:
    # (addition) Race: a reading of the queue taken before this commit may reach the
    # visitor after this frame, and would show the chat as queued again. The clock read
    # after the commit is above that reading's `queue_version`, so the widget drops it.
    visitor_copy = outbound.conversation_assigned_to_visitor(
        conversation=event.conversation_id, agent=event.agent, queue_version=queue_clock()
    )
    _frame([visitor_group(event.visitor_id)], visitor_copy)
    agent_copy = outbound.conversation_assigned_to_agent(
        conversation=event.conversation, agent=event.agent
    )
    _frame([agent_group(event.agent_id)], agent_copy)


def conversation_transferred(event: events.ConversationTransferred) -> None:
    frame = outbound.conversation_transferred(conversation=event.conversation_id, to=event.to_agent)
    _frame([agent_group(event.from_agent_id)], frame)


def conversation_requeued(event: events.ConversationRequeued) -> None:
    frame = outbound.conversation_requeued(conversation=event.conversation_id)
    _frame([agent_group(event.former_agent_id)], frame)


def conversation_closed(event: events.ConversationClosed) -> None:
    frame = outbound.conversation_closed(conversation=event.conversation_id, by=event.by)
    _frame(participants(event.visitor_id, event.agent_id), frame)


def rating_given(event: events.RatingGiven) -> None:
    frame = outbound.conversation_rated(conversation=event.conversation_id, score=event.score)
    _frame([visitor_group(event.visitor_id)], frame)
    if event.agent_id is not None:
        agent_copy = outbound.conversation_rated(
            conversation=event.conversation_id, score=event.score, comment=event.comment
        )
        _frame([agent_group(event.agent_id)], agent_copy)


def typing_changed(event: events.TypingChanged) -> None:
    if event.by == "visitor":
        if event.agent_id is None:
            return
        to = [agent_group(event.agent_id)]
    else:
        to = [visitor_group(event.visitor_id)]
    frame = outbound.typing(
        conversation=event.conversation_id, by=event.by, active=event.active, text=event.text
    )
    _frame(to, frame)


def read_up_to(event: events.ReadUpTo) -> None:
    frame = outbound.read(conversation=event.conversation_id, seq=event.seq, by=event.by)
    _frame(participants(event.visitor_id, event.agent_id), frame, skip=event.origin)


def queue_read(event: events.QueueRead) -> None:
    for conversation_id, visitor_id, position, wait in event.positions:
        frame = outbound.conversation_queued(
            conversation=conversation_id,
            position=position,
            queue_version=event.version,
            estimated_wait_seconds=wait,
        )
        _frame([visitor_group(visitor_id)], frame)
    # Agents filter by the sites they serve: each socket sums its own (`chat_queue`).
    outbox.send(
        [groups.AGENTS_GROUP],
        {
            "type": groups.QUEUE_EVENT,
            "site": event.site_id,
            "length": event.length,
            "version": event.version,
        },
    )


def presence_changed(event: events.PresenceChanged) -> None:
    frame = outbound.presence(status=event.status, auto=event.auto)
    _frame([agent_group(event.agent_id)], frame, skip=event.origin)


def agents_online_changed(event: events.AgentsOnlineChanged) -> None:
    _frame([groups.site_visitors_group(event.site_id)], outbound.agents_online(online=event.online))


def agent_deactivated(event: events.AgentDeactivated) -> None:
    outbox.send([agent_group(event.agent_id)], {"type": groups.AGENT_GONE_EVENT})


def visitor_token_rotated(event: events.VisitorTokenRotated) -> None:
    outbox.send([visitor_group(event.visitor_id)], {"type": groups.TOKEN_ROTATED_EVENT})


def visitor_moved(event: events.VisitorMoved) -> None:
    outbox.send([visitor_group(event.visitor_id)], {"type": groups.VISITOR_MOVED_EVENT})


def visitor_context_changed(event: events.VisitorContextChanged) -> None:
    frame = outbound.visitor_context(
        conversation=event.conversation_id, visitor=event.visitor_id, context=event.context
    )
    _frame([agent_group(event.agent_id)], frame)


def canned_responses_changed(event: events.CannedResponsesChanged) -> None:
    # An agent's own snippets concern that agent's tabs only; a shared one every agent.
    # A doorbell, not the list: each socket reads its own list (`chat_canned_changed`).
    to = groups.AGENTS_GROUP if event.owner_id is None else agent_group(event.owner_id)
    outbox.send([to], {"type": groups.CANNED_CHANGED_EVENT})


def call_invited(event: events.CallInvited) -> None:
    common = {
        "conversation": event.conversation_id,
        "call_id": event.call_id,
        "media": event.media,
        "ice_servers": event.ice_servers,
    }
    _frame([visitor_group(event.visitor_id)], outbound.call_invited(**common, agent=event.agent))
    _frame([agent_group(event.agent_id)], outbound.call_invited(**common))


def call_accepted(event: events.CallAccepted) -> None:
    frame = outbound.call_accepted(conversation=event.conversation_id, call_id=event.call_id)
    _frame(participants(event.visitor_id, event.agent_id), frame)


def call_ended(event: events.CallEnded) -> None:
    frame = outbound.call_ended(
        conversation=event.conversation_id, call_id=event.call_id, reason=event.reason
    )
    _frame(participants(event.visitor_id, event.agent_id), frame)


def call_signalled(event: events.CallSignalled) -> None:
    # The other participant only: its group, and in it the one tab holding the call.
    to = visitor_group(event.visitor_id) if event.to == "visitor" else agent_group(event.agent_id)
    frame = outbound.call_signal(call_id=event.call_id, data=event.data)
    outbox.send([to], frame_event(frame, only_channel=event.to_channel))


HANDLERS = {
    events.MessageCreated: message_created,
    events.NoteCreated: note_created,
    events.ConversationAssigned: conversation_assigned,
    events.ConversationTransferred: conversation_transferred,
    events.ConversationRequeued: conversation_requeued,
    events.ConversationClosed: conversation_closed,
    events.RatingGiven: rating_given,
    events.TypingChanged: typing_changed,
    events.ReadUpTo: read_up_to,
    events.QueueRead: queue_read,
    events.PresenceChanged: presence_changed,
    events.AgentsOnlineChanged: agents_online_changed,
    events.AgentDeactivated: agent_deactivated,
    events.VisitorTokenRotated: visitor_token_rotated,
    events.VisitorMoved: visitor_moved,
    events.VisitorContextChanged: visitor_context_changed,
    events.CannedResponsesChanged: canned_responses_changed,
    events.CallInvited: call_invited,
    events.CallAccepted: call_accepted,
    events.CallEnded: call_ended,
    events.CallSignalled: call_signalled,
}


def connect() -> None:
    """Subscribe the fan-out to the domain events (ChatConfig.ready)."""
    for event_type, handler in HANDLERS.items():
        events.subscribe(event_type, handler)
