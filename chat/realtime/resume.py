"""What a socket is told from the database when it opens (`ready`) or asks to catch up
(`sync`): the state it resumes from, after which the frames it hears continue.

Read on an ORM thread after the socket joined its groups, so that nothing committed in
between is missed: a frame that repeats what `ready` carried is dropped by seq
(chat/realtime/delivery.py).
"""

from agents.models import AgentProfile

from .. import selectors
from ..models import Conversation, ConversationRating, Visitor
from ..protocol import outbound
from ..store import loop, sql
from ..store.visitor_socket_sql import SocketCount

Status = Conversation.Status


def visitor_ready(visitor: Visitor, last_seq: int, *, sneak_peek: bool) -> dict:
    """The visitor's latest conversation (open or closed) and its messages after
    `last_seq`; `sneak_peek` (addition) says whether this socket relays drafts, which
    the widget's privacy line discloses."""
    # `selectors.latest_conversation`, with (addition) the visitor's CSAT score of it, or
    # null (the widget offers rating once), in the same query: a join, which the ORM
    # builds in about two thirds of a subquery's time (docs/performance.md, change 18).
    conversation = (
        Conversation.objects.filter(visitor_id=visitor.id)
        .select_related("agent", "rating")
        .order_by("-created_at", "-id")
        .first()
    )
    summary, messages = None, []
    if conversation is not None:
        rating: ConversationRating | None = getattr(conversation, "rating", None)
        summary = _summary(
            conversation,
            rating=rating.score if rating is not None else None,
            # (addition) Who joined after which message, for the widget's "joined" lines.
            joins=selectors.joins(conversation.id),
        )
        # A widget that already has every message (most reconnects) needs no read of
        # them. Race: one committed after the row above was read is not in `ready`; the
        # socket joined its groups before this read, so its broadcast, published after
        # its commit, reaches the socket as a `message` frame.
        if last_seq < conversation.last_seq:
            messages = selectors.messages_after(conversation.id, last_seq)
        # A message may commit between the two reads: last_seq covers what is sent.
        if messages:
            summary["last_seq"] = max(summary["last_seq"], messages[-1]["seq"])
    return outbound.visitor_ready(
        visitor={"id": visitor.id, "email": visitor.email or None},
        conversation=summary,
        messages=messages,
        agents_online=selectors.agents_online(visitor.site_id),
        sneak_peek=sneak_peek,
    )


async def visitor_ready_on_loop(
    visitor: Visitor, last_seq: int, *, sneak_peek: bool
) -> dict | None:
    """`visitor_ready` on the worker's event loop (chat/store/loop.py): one statement
    for the conversation, its agent, rating and turns and whether agents are online, and
    one for the messages after `last_seq` when the widget lacks some. None where it does
    not answer (a queued conversation, whose position and wait the queue's code reads; a
    missed message with a file; the database failed): `visitor_ready` then does.

    Race: as for `visitor_ready`, the socket joined its groups before this read."""
    ready, _ringing = await counted_ready_on_loop(visitor, last_seq, sneak_peek=sneak_peek)
    return ready


async def counted_ready_on_loop(
    visitor: Visitor, last_seq: int, *, sneak_peek: bool, count: SocketCount | None = None
) -> tuple[dict | None, bool | None]:
    """`visitor_ready_on_loop`, counting the socket (`count`) in its first statement:
    (the `ready` or None, whether a call rings or None where the socket's count did not
    commit, or its outcome is unknown)."""
    ringing = None
    try:
        counting = [] if count is None else count.count_params
        row = await loop.fetch_one(
            sql.hello_ready_sql(counting=count is not None, beat=count is not None and count.beat),
            [
                *counting,
                AgentProfile.Status.AVAILABLE,
                selectors.heartbeat_cutoff(),
                visitor.site_id,
                *([] if count is None else count.ringing_params),
                visitor.id,
            ],
        )
        found = sql.hello_ready_from(row)
        ringing = found.ringing
        conversation = found.conversation
        summary, messages = None, []
        if conversation is not None:
            if conversation.status == Status.QUEUED:
                return None, ringing
            if conversation.agent_id is not None:
                # What `public_dict` shows, so that reading `conversation.agent` makes no query.
                conversation.agent = AgentProfile.from_db(
                    "default", ["id", "display_name"], [conversation.agent_id, found.agent_name]
                )
            summary = _summary(
                conversation,
                rating=found.rating,
                joins=[
                    {"agent": {"display_name": name} if name else None, "after_seq": after_seq}
                    for name, after_seq in found.joins
                ],
            )
            if last_seq < conversation.last_seq:
                rows = await loop.fetch_all(sql.hello_messages_sql(), [conversation.id, last_seq])
                stored = sql.hello_messages_from(rows)
                if stored is None:
                    return None, ringing
                messages = [selectors.message_dict(message) for message in stored]
            if messages:
                summary["last_seq"] = max(summary["last_seq"], messages[-1]["seq"])
    except loop.Unavailable:
        return None, ringing
    ready = outbound.visitor_ready(
        visitor={"id": visitor.id, "email": visitor.email or None},
        conversation=summary,
        messages=messages,
        agents_online=found.agents_online,
        sneak_peek=sneak_peek,
    )
    return ready, ringing


def _summary(conversation: Conversation, *, rating: int | None, joins: list[dict]) -> dict:
    """The conversation as `ready` shows the visitor: with (addition) its CSAT score (or
    null: the widget offers rating once) and the agents' turns."""
    summary = selectors.visitor_conversation_dict(conversation)
    summary["rating"] = rating
    summary["joins"] = joins
    return summary


def agent_ready(agent_id: int) -> tuple[dict, frozenset[int] | None, dict[int, int]]:
    """The agent's `ready` (its active conversations, the queue length of its sites),
    with the sites it serves (None: every site) and every site's queue length, which the
    socket keeps to sum later changes (`AgentConsumer.chat_queue`)."""
    agent = AgentProfile.objects.get(pk=agent_id)
    conversations = list(
        Conversation.objects.filter(agent_id=agent.id, status=Status.ACTIVE)
        .select_related("visitor")
        .order_by("assigned_at", "id")
    )
    sites = selectors.agent_site_ids(agent.id)
    lengths = selectors.queue_lengths()
    # (addition) Each conversation's turns, for the dashboard's "joined" lines: one query.
    joins = selectors.joins_of([c.id for c in conversations])
    ready = outbound.agent_ready(
        agent={
            "id": agent.id,
            "display_name": agent.display_name,
            "status": agent.status,
            # (addition) True while away because idle, not by choice.
            "auto_away": agent.auto_away,
            "capacity": agent.capacity,
        },
        conversations=[
            {**selectors.agent_conversation_dict(c), "joins": joins.get(c.id, [])}
            for c in conversations
        ],
        queue_length=sum(n for site, n in lengths.items() if sites is None or site in sites),
    )
    return ready, sites, lengths


def sync(*, agent_id: int, conversation_id: int, after_seq: int) -> dict:
    """The messages after `after_seq` of a conversation the agent may read, and its
    notes."""
    conversation = selectors.conversation_for_agent(agent_id, conversation_id, read_only=True)
    return outbound.sync(
        conversation=conversation.id,
        after_seq=after_seq,
        last_seq=conversation.last_seq,
        messages=selectors.messages_after(conversation.id, after_seq),
        notes=selectors.notes_of(conversation.id),
    )
