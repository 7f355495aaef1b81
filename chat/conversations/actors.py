"""Who acts on a conversation, and the row lock each may take on one.

A visitor acts on its own open conversation (it names none), an agent on the ones
assigned to it, and the system (an operator in the admin, the sweep) on any. The access
rule and the lock are one function, so no service can lock a conversation its caller
may not touch.
"""

from dataclasses import dataclass

from ..errors import ConversationClosed, NotFound
from ..models import Conversation, SenderKind

Status = Conversation.Status


@dataclass(frozen=True, slots=True)
class Actor:
    kind: str  # SenderKind: visitor, agent or system
    visitor_id: int | None = None
    agent_id: int | None = None

    @classmethod
    def visitor(cls, visitor_id: int) -> "Actor":
        return cls(SenderKind.VISITOR, visitor_id=visitor_id)

    @classmethod
    def agent(cls, agent_id: int) -> "Actor":
        return cls(SenderKind.AGENT, agent_id=agent_id)

    @classmethod
    def system(cls) -> "Actor":
        return cls(SenderKind.SYSTEM)

    @property
    def is_visitor(self) -> bool:
        return self.kind == SenderKind.VISITOR


def lock_open_conversation(actor: Actor, conversation_id: int | None = None) -> Conversation:
    """Lock the conversation `actor` acts on (inside a transaction): a visitor's open
    one; an agent's `conversation_id` if assigned to it; for the system, any.

    `NotFound` when there is none or it is not the actor's (the same answer either way,
    so ids cannot be probed); `ConversationClosed` when it is the actor's but closed."""
    rows = Conversation.objects.select_for_update()
    if actor.is_visitor:
        conversation = rows.filter(
            visitor_id=actor.visitor_id, status__in=Conversation.OPEN_STATUSES
        ).first()
    elif actor.kind == SenderKind.AGENT:
        conversation = rows.filter(pk=conversation_id, agent_id=actor.agent_id).first()
    else:
        conversation = rows.filter(pk=conversation_id).first()
    if conversation is None:
        raise NotFound
    if conversation.status == Status.CLOSED:
        raise ConversationClosed
    return conversation
