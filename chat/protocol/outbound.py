"""Every frame the server sends, built in one place: one constructor per frame type,
with the fields docs/protocol.md gives it. Objects inside frames (a message, a
conversation as each side sees it, an agent) come from the selectors' wire shapes.

Frames stay plain dicts: they cross the channel layer as they are.
"""

from typing import Any

Frame = dict[str, Any]


# --- both sides -----------------------------------------------------------------


def message(message: Frame) -> Frame:
    """A stored message, to every participant socket but the sender's."""
    return {"type": "message", **message}


def message_ack(*, client_msg_id: str, conversation: int, seq: int) -> Frame:
    return {
        "type": "message.ack",
        "client_msg_id": client_msg_id,
        "conversation": conversation,
        "seq": seq,
    }


def conversation_closed(*, conversation: int, by: str) -> Frame:
    return {"type": "conversation.closed", "conversation": conversation, "by": by}


def conversation_rated(*, conversation: int, score: int, comment: str | None = None) -> Frame:
    """The visitor's rating; the agent's copy also carries the comment."""
    frame = {"type": "conversation.rated", "conversation": conversation, "score": score}
    if comment is not None:
        frame["comment"] = comment
    return frame


def typing(*, conversation: int, by: str, active: bool, text: str | None = None) -> Frame:
    frame = {"type": "typing", "conversation": conversation, "from": by, "active": active}
    if text is not None:
        frame["text"] = text
    return frame


def read(*, conversation: int, seq: int, by: str) -> Frame:
    return {"type": "read", "conversation": conversation, "seq": seq, "by": by}


def pong() -> Frame:
    return {"type": "pong"}


def bot_feedback(*, seq: int, helpful: bool) -> Frame:
    """(addition) The visitor's verdict on a bot answer was stored."""
    return {"type": "bot.feedback", "seq": seq, "helpful": helpful}


def error(*, code: str, detail: str, client_msg_id: str | None = None) -> Frame:
    frame = {"type": "error", "code": code, "detail": detail}
    if client_msg_id is not None:
        frame["client_msg_id"] = client_msg_id
    return frame


# --- calls (both sides; docs/protocol.md "Calls") ------------------------------


def call_invited(
    *,
    conversation: int,
    call_id: int,
    media: str,
    ice_servers: list[Frame],
    agent: Frame | None = None,
) -> Frame:
    """A call rings: to both participants; the visitor's copy names the agent."""
    frame = {
        "type": "call.invited",
        "conversation": conversation,
        "call_id": call_id,
        "media": media,
        "ice_servers": ice_servers,
    }
    if agent is not None:
        frame["agent"] = agent
    return frame


def call_accepted(*, conversation: int, call_id: int) -> Frame:
    return {"type": "call.accepted", "conversation": conversation, "call_id": call_id}


def call_signal(*, call_id: int, data: Frame) -> Frame:
    """What the other participant sent, as it sent it."""
    return {"type": "call.signal", "call_id": call_id, "data": data}


def call_ended(*, conversation: int, call_id: int, reason: str) -> Frame:
    return {
        "type": "call.ended",
        "conversation": conversation,
        "call_id": call_id,
        "reason": reason,
    }


# --- to visitors ------------------------------------------------------------------


def visitor_ready(
    *,
    visitor: Frame,
    conversation: Frame | None,
    messages: list[Frame],
    agents_online: bool,
    sneak_peek: bool,
) -> Frame:
    return {
        "type": "ready",
        "visitor": visitor,
        "conversation": conversation,
        "messages": messages,
        "agents_online": agents_online,
        "sneak_peek": sneak_peek,
    }


def conversation_queued(
    *, conversation: int, position: int, queue_version: int, estimated_wait_seconds: int | None
) -> Frame:
    return {
        "type": "conversation.queued",
        "conversation": conversation,
        "position": position,
        "queue_version": queue_version,
        "estimated_wait_seconds": estimated_wait_seconds,
    }


def conversation_assigned_to_visitor(
    *, conversation: int, agent: Frame, queue_version: int
) -> Frame:
    return {
        "type": "conversation.assigned",
        "conversation": {
            "id": conversation,
            "status": "active",
            "queue_position": None,
            "agent": agent,
        },
        "agent": agent,
        "queue_version": queue_version,
    }


def agents_online(*, online: bool) -> Frame:
    return {"type": "agents.online", "online": online}


def transcript_sent(*, conversation: int, email: str) -> Frame:
    return {"type": "transcript.sent", "conversation": conversation, "email": email}


# --- to agents ------------------------------------------------------------------


def agent_ready(*, agent: Frame, conversations: list[Frame], queue_length: int) -> Frame:
    return {
        "type": "ready",
        "agent": agent,
        "conversations": conversations,
        "queue_length": queue_length,
    }


def conversation_assigned_to_agent(*, conversation: Frame, agent: Frame) -> Frame:
    """`conversation` is the agent's copy, with the whole history and the notes."""
    return {"type": "conversation.assigned", "conversation": conversation, "agent": agent}


def conversation_transferred(*, conversation: int, to: Frame | None) -> Frame:
    return {"type": "conversation.transferred", "conversation": conversation, "to": to}


def conversation_requeued(*, conversation: int) -> Frame:
    return {"type": "conversation.requeued", "conversation": conversation}


def note(note: Frame) -> Frame:
    return {"type": "note", **note}


def note_ack(*, client_msg_id: str, conversation: int, id: int) -> Frame:
    return {
        "type": "note.ack",
        "client_msg_id": client_msg_id,
        "conversation": conversation,
        "id": id,
    }


def sync(
    *, conversation: int, after_seq: int, last_seq: int, messages: list[Frame], notes: list[Frame]
) -> Frame:
    return {
        "type": "sync",
        "conversation": conversation,
        "after_seq": after_seq,
        "last_seq": last_seq,
        "messages": messages,
        "notes": notes,
    }


def presence(*, status: str, auto: bool = False) -> Frame:
    """`auto` (addition): the server changed it, for idleness or activity."""
    frame = {"type": "presence", "status": status}
    if auto:
        frame["auto"] = True
    return frame


def queue(*, queue_length: int, conversations: list[Frame] | None = None) -> Frame:
    """The queue's length at the agent's sites; in answer to `queue.list` (addition) also
    who waits (`selectors.queue_for_agent`)."""
    frame = {"type": "queue", "queue_length": queue_length}
    if conversations is not None:
        frame["conversations"] = conversations
    return frame


def visitor_context(*, conversation: int, visitor: int, context: Frame) -> Frame:
    return {
        "type": "visitor.context",
        "conversation": conversation,
        "visitor": {"id": visitor},
        "visitor_context": context,
    }


def visitor_profile(*, conversation: int, visitor: int, context: Frame, previous: Frame) -> Frame:
    return {
        "type": "visitor.profile",
        "conversation": conversation,
        "visitor": {"id": visitor},
        "visitor_context": context,
        "previous": previous,
    }


def conversation_history(
    *,
    conversation: int,
    visitor: int,
    status: str,
    channel: str,
    created_at: str,
    closed_at: str | None,
    messages: list[Frame],
) -> Frame:
    return {
        "type": "conversation.history",
        "conversation": conversation,
        "visitor": {"id": visitor},
        "status": status,
        "channel": channel,
        "created_at": created_at,
        "closed_at": closed_at,
        "messages": messages,
    }


def agents(agents: list[Frame]) -> Frame:
    return {"type": "agents", "agents": agents}


def canned(*, responses: list[Frame], can_edit_shared: bool) -> Frame:
    return {"type": "canned", "responses": responses, "can_edit_shared": can_edit_shared}


def canned_saved(response: Frame) -> Frame:
    return {"type": "canned.saved", "response": response}


def canned_deleted(*, id: int) -> Frame:
    return {"type": "canned.deleted", "id": id}
