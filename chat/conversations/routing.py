"""Who gets a chat: queued conversations to free agents, oldest first; transfers.

The one place that locks agent rows to hand out a chat. Each assignment is one short
transaction holding the conversation's row lock and the agent's; both sides hear of it
(`ConversationAssigned`) once it commits.
"""

import logging
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from agents.models import AgentProfile

from .. import events, selectors
from ..errors import AgentUnavailable, NotFound, PickingNotAllowed
from ..models import Assignment, Conversation, SenderKind, Site
from ..store import sql
from . import messages, queue
from .actors import Actor, lock_open_conversation

logger = logging.getLogger(__name__)
Status = Conversation.Status

TRANSFERRED_TEXT = "You are now chatting with {name}."
TRANSFERRED_TO_QUEUE_TEXT = "You are being transferred to another agent. Please wait a moment."

# How many of the least-loaded candidates to try before concluding nobody is free; a
# candidate can fill up between the unlocked ranking and its row lock, or be held by
# another router.
CANDIDATES_TO_TRY = 10


def assign_queued(
    *, site_ids: Iterable[int] | None = None, now: datetime | None = None
) -> list[int]:
    """Give queued conversations to free agents, oldest first, until none can be placed:
    the run of a freed slot or an agent coming (a new chat's own run is
    `route_new_conversation`). Returns the assigned conversation ids."""
    now = now or timezone.now()
    assigned, changed_sites = _place_queued(site_ids, now=now)
    for site_id in changed_sites:
        queue.changed(site_id)
    return assigned


def route_new_conversation(conversation: Conversation, *, now: datetime) -> None:
    """A just-opened chat that `assign_at_once` could not place: route the site's queue
    for it, waiting only for its own row when every queued row is held."""
    _assigned, changed_sites = _place_queued(
        [conversation.site_id], now=now, new_chat=conversation.id
    )
    if changed_sites:
        # One reading for both changes: the assignments, and this chat's arrival.
        queue.changed(conversation.site_id)
    else:
        # It joined the queue: its own position is new, and so is everyone's behind it.
        # Race: `queued_at` is taken before the transaction, so with two workers a
        # conversation can commit after others queued later than it and land ahead of
        # them, after they were told their positions; usually nobody is behind it.
        queue.changed(conversation.site_id, from_conversation=conversation.id)


def assign_at_once(conversation: Conversation, *, now: datetime) -> bool:
    """Give a chat being opened (its row inserted by this transaction) to a free agent in
    the same transaction, when nobody of its site is queued ahead of it; True if it was.
    Otherwise, having changed nothing, False: it is routed after the commit as a queued
    chat (`route_new_conversation`), oldest first.

    The agent is locked and its load counted under the lock as every assignment does
    (`lock_agent_for`): capacity holds. Race: a chat of the site opened a moment
    earlier whose transaction has not committed yet is not seen queued, and this one is
    assigned first; the same race as two openings committing out of `queued_at` order.
    """
    if sql.anyone_queued_but(conversation.site_id, conversation.id):
        return False
    ranking = Ranking(conversation.site_id, now)
    if not ranking.anyone_free():
        return False
    agent = lock_agent_for(ranking)
    if agent is None:
        return False
    _assign(conversation, agent, now=now)
    return True


def _place_queued(
    site_ids: Iterable[int] | None, *, now: datetime, new_chat: int | None = None
) -> tuple[list[int], set[int]]:
    """The routing loop: (assigned conversation ids, sites whose queue changed). The
    agents of a site are ranked once per run (`Ranking`), not once per chat.

    `new_chat`: the run is that chat's own (`route_new_conversation`): when every queued
    row is held, it waits for its own chat only, not for the oldest (below).
    """
    site_ids = None if site_ids is None else list(site_ids)
    assigned: list[int] = []
    changed_sites: set[int] = set()
    rankings: dict[int, Ranking] = {}
    blocked_sites: set[int] = set()
    if new_chat is not None:
        # Before any lock: when every agent is full (each arrival of a burst's second
        # half), one query says so. A freed slot's run ranks after locking a chat.
        for site_id in site_ids:
            rankings[site_id] = Ranking(site_id, now)
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
            # chats at once instead of queueing on the oldest row.
            # When every queued row is held, a run for a freed slot waits for the
            # oldest, then finds it no longer queued or still there: a holder that
            # found no agent lets go, and the slot freed meanwhile must not be missed.
            # A new chat's run waits for its own chat only (a burst's routers would
            # all queue on the oldest row again): its holder is another router, who
            # reads the agents again before giving up on it (Ranking.stale), or a
            # message or a close that lets go at once. The price: while one router
            # holds the oldest chat and finds no agent, another that finds a slot
            # freed that very moment gives it to the next chat in line.
            queued = sql.QueuedConversations(site_ids, blocked_sites, passed_over)
            conversation = queued.lock_oldest(skip_locked=True)
            if conversation is None and new_chat is not None:
                if new_chat not in assigned and not waited_for_new_chat:
                    waited_for_new_chat = True
                    conversation = sql.lock_if_queued(new_chat)
            elif conversation is None:
                conversation = queued.lock_oldest(skip_locked=False)
                if conversation is None:
                    # Under the lock PostgreSQL may skip a row that changed while we
                    # waited and return nothing although others are queued: look again
                    # (bounded).
                    empty_reads += 1
                    if empty_reads < 3 and queued.exists():
                        continue
            if conversation is None:
                break
            ranking = rankings.get(conversation.site_id)
            if ranking is None:
                ranking = rankings[conversation.site_id] = Ranking(conversation.site_id, now)
            else:
                ranking.stale = True
            agent = lock_agent_for(ranking, handed_back_by=conversation.handed_back_by_id)
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


def _assign(conversation: Conversation, agent: AgentProfile, *, now: datetime) -> None:
    """Give a locked conversation to a locked agent; both hear of it once committed."""
    # Never assigned before (assigned_at is kept through a re-queue): no agent could
    # have written a note on it, so there are none to load.
    had_an_agent = conversation.assigned_at is not None
    conversation.status = Status.ACTIVE
    conversation.agent = agent
    conversation.assigned_at = now
    conversation.handed_back_by = None
    agent.last_assigned_at = now
    # The agent's copy carries the whole history; under the conversation's row lock it
    # is every message, so it also gives the unread count.
    history = selectors.messages_without_attachments(conversation.id)
    if history is None:
        history = selectors.messages_after(conversation.id, 0)
    # A re-queued chat comes to its new agent unread, whatever the last agent read.
    conversation.agent_read_seq = 0
    conversation.agent_unread = sum(1 for m in history if m["sender"] == SenderKind.VISITOR)
    sql.save_assignment(conversation, agent)
    # The agent's turn begins after the last message so far (the visitor's "joined"
    # line goes there); the turn before it, if any, was ended by whoever ended it.
    sql.insert_new(
        Assignment(
            conversation_id=conversation.id,
            agent_id=agent.id,
            started_at=now,
            after_seq=conversation.last_seq,
        )
    )
    if not Conversation.visitor.is_cached(conversation):
        conversation.visitor = sql.load_visitor(conversation.visitor_id)  # visitor_context
    events.emit_on_commit(
        events.ConversationAssigned(
            **events.about(conversation),
            at=conversation.assigned_at,
            agent=agent.public_dict(),
            conversation={
                **selectors.agent_conversation_dict(conversation),
                "messages": history,
                "notes": selectors.notes_of(conversation.id) if had_an_agent else [],
                # (addition) Each agent's turn, this one's included: the dashboard puts
                # "Alice joined the chat" where each began. Never assigned before: this
                # turn is the only one.
                "joins": (
                    selectors.joins(conversation.id)
                    if had_an_agent
                    else [selectors.join_dict(agent.display_name, conversation.last_seq)]
                ),
            },
        )
    )
    logger.info("conversation %s assigned to agent %s", conversation.id, agent.id)


def transfer_conversation(*, agent_id: int, conversation_id: int, to_agent_id: int | None) -> None:
    """Hand an active chat of this agent to another agent with room, or (None) back to
    the front of the queue. The visitor gets a system message and, once someone has it,
    `conversation.assigned`; the new agent gets it with the whole history and its notes;
    the old agent gets `conversation.transferred`."""
    now = timezone.now()
    with transaction.atomic():
        conversation = lock_open_conversation(Actor.agent(agent_id), conversation_id)
        if to_agent_id is None:
            # Someone else should take it: routing passes this agent over while another
            # is present (`lock_agent_for`).
            back_to_queue(
                conversation,
                text=TRANSFERRED_TO_QUEUE_TEXT,
                code="transferring",
                now=now,
                handed_back_by=agent_id,
                ended=Assignment.Ended.HANDED_BACK,
            )
            target = None
        else:
            if to_agent_id == conversation.agent_id:
                raise AgentUnavailable
            target = _lock_agent_taking(to_agent_id, conversation.site_id, now=now)
            end_turn(conversation, Assignment.Ended.TRANSFERRED, now=now)
            conversation.agent = target
            messages.append_message(
                conversation,
                sender=SenderKind.SYSTEM,
                body=TRANSFERRED_TEXT.format(name=target.display_name),
                now=now,
                code="transferred",
                params={"name": target.display_name},
            )
            _assign(conversation, target, now=now)
        events.emit_on_commit(
            events.ConversationTransferred(
                **events.about(conversation),
                from_agent_id=agent_id,
                to_agent=target.public_dict() if target else None,
            )
        )
    logger.info("conversation %s transferred by agent %s to %s", conversation_id, agent_id, target)
    if target is None:
        queue.changed(conversation.site_id)
        assign_queued(site_ids=[conversation.site_id], now=now)
    else:
        # The old agent has a free slot now.
        assign_queued(site_ids=selectors.agent_site_ids(agent_id), now=now)


def take_conversation(*, agent_id: int, conversation_id: int) -> None:
    """An agent takes a queued chat from the queue themselves, out of routing's order:
    only on a site that allows it (`Site.agents_pick_from_queue`), only a chat of a site
    the agent serves, only with a free slot. An agent who is away (not routed chats) may
    still pick one."""
    now = timezone.now()
    with transaction.atomic():
        # Race: routing may be assigning this very chat; its row lock decides, and the
        # loser finds it no longer queued (`NotFound`, as for any chat not in the queue).
        conversation = (
            Conversation.objects.select_for_update(of=("self",))
            .filter(pk=conversation_id, status=Status.QUEUED)
            .first()
        )
        if conversation is None or not _serves(agent_id, conversation.site_id):
            raise NotFound
        if not Site.objects.filter(pk=conversation.site_id, agents_pick_from_queue=True).exists():
            raise PickingNotAllowed
        agent = _lock_agent_taking(agent_id, conversation.site_id, now=now, by_choice=True)
        _assign(conversation, agent, now=now)
    logger.info("conversation %s taken from the queue by agent %s", conversation_id, agent_id)
    queue.changed(conversation.site_id)


def _serves(agent_id: int, site_id: int) -> bool:
    return AgentProfile.objects.filter(selectors.serves(site_id), pk=agent_id).exists()


def end_turn(conversation: Conversation, ended: str, *, now: datetime) -> None:
    """End the open turn of a conversation whose row the caller has locked."""
    Assignment.objects.filter(conversation_id=conversation.id, ended_at__isnull=True).update(
        ended_at=now, ended=ended
    )


def back_to_queue(
    conversation: Conversation,
    *,
    text: str,
    now: datetime,
    ended: str,
    handed_back_by: int | None = None,
    code: str = "",
) -> None:
    """Put a locked, active conversation back at the front of its site's queue, and tell
    the visitor why with a system message. The caller tells the agent it left."""
    end_turn(conversation, ended, now=now)
    conversation.status = Status.QUEUED
    conversation.agent = None
    conversation.queue_priority = 1
    conversation.handed_back_by_id = handed_back_by
    conversation.save(update_fields=["status", "agent", "queue_priority", "handed_back_by"])
    messages.append_message(conversation, sender=SenderKind.SYSTEM, body=text, now=now, code=code)


def _lock_agent_taking(
    agent_id: int, site_id: int, *, now: datetime, by_choice: bool = False
) -> AgentProfile:
    """Lock an agent's row and check, under the lock, that it may take one more chat of
    this site now: present (a live heartbeat), with room, and available, or (`by_choice`:
    the agent picks the chat themselves) away too: away only stops routing. The same lock
    as `lock_agent_for`, so a transfer or a pick and a routing run at once cannot both
    fill the agent's last slot. `AgentUnavailable` otherwise."""
    if not _serves(agent_id, site_id):
        raise AgentUnavailable
    agent = (
        AgentProfile.objects.select_for_update(of=("self",))
        .filter(pk=agent_id, user__is_active=True)
        .first()
    )
    if (
        agent is None
        or (agent.status != AgentProfile.Status.AVAILABLE and not by_choice)
        or agent.last_heartbeat is None
        or agent.last_heartbeat < selectors.heartbeat_cutoff(now)
        or selectors.active_load(agent.id) >= agent.capacity
    ):
        raise AgentUnavailable
    return agent


# --- the policy: whom to lock ---------------------------------------------------


class Ranking:
    """The agents present for one site and their load, least loaded first, then the
    one idle longest: read once per routing run, not once per chat, and kept up to date
    with what the run itself assigns and what it sees under each agent's row lock.

    Unlocked, so it only says whose rows are worth locking: the load that decides is
    counted under the lock (`lock_agent_for`). What it cannot know is a slot freed
    after it was read; that slot's own routing run takes care of it, and a router reads
    the ranking again before concluding that nobody can take a chat it locked after the
    ranking was read (`stale`).
    """

    def __init__(self, site_id: int, now: datetime) -> None:
        self.site_id = site_id
        self.now = now
        self.read()

    def read(self) -> None:
        rows = selectors.present_agent_loads(self.site_id, self.now)
        # agent id -> [load, capacity, order]; order: the ranking's own, then each
        # assignment made by this run puts its agent last among equals (idle least).
        self.agents = {
            agent_id: [load, capacity, order]
            for order, (agent_id, capacity, load) in enumerate(rows)
        }
        self.next_order = len(rows)
        self.stale = False

    def free(self, *, handed_back_by: int | None = None) -> list[int]:
        """Ids of the agents with room, best first. `handed_back_by` is left out while any
        other agent of the site is present, busy or not (see `lock_agent_for`)."""
        ranked = sorted(
            (load, order, agent_id)
            for agent_id, (load, capacity, order) in self.agents.items()
            if load < capacity
        )
        free = [agent_id for _load, _order, agent_id in ranked]
        if handed_back_by is not None and any(a != handed_back_by for a in self.agents):
            free = [agent_id for agent_id in free if agent_id != handed_back_by]
        return free

    def anyone_free(self) -> bool:
        return any(load < capacity for load, capacity, _order in self.agents.values())

    def took(self, agent_id: int) -> None:
        seat = self.agents.get(agent_id)
        if seat is not None:
            seat[0] += 1
            seat[2] = self.next_order
            self.next_order += 1

    def saw(self, agent: AgentProfile, load: int | None, *, present: bool) -> None:
        """What the row lock showed about an agent: gone, or its load and capacity."""
        if not present:
            self.agents.pop(agent.id, None)
        elif agent.id in self.agents:
            self.agents[agent.id][0:2] = [load, agent.capacity]


def lock_agent_for(ranking: Ranking, *, handed_back_by: int | None = None) -> AgentProfile | None:
    """Lock and return the least-loaded agent of the ranking's site who can take a chat
    now, or None.

    `handed_back_by`: the agent who sent this chat back to the queue. They are not given
    it again while any other agent of the site is present (`selectors.present_agents`),
    even one without room right now: the chat waits for them. Only when nobody else is
    present does it go back to that agent, rather than leave the visitor waiting for
    nobody.

    Call inside a transaction. Race: two workers may pick the same agent for two
    conversations at once; the row lock on AgentProfile serialises them, and the load is
    counted again under the lock, so the second one sees the first assignment and moves
    on instead of giving the agent more than its capacity.

    An agent row another router holds is skipped (SKIP LOCKED) at first: a router keeps
    the lock of every candidate it looked at until it commits, so two routers waiting
    for each other's candidates would deadlock. Only when no candidate it could lock is
    free does it let go of them all (a savepoint rollback releases row locks) and then
    wait for the first one it skipped, holding no other agent's lock: the holder may be
    a heartbeat, or a router whose assignment fails.
    """
    agent = _lock_a_free_agent(ranking, handed_back_by)
    if agent is None and ranking.stale:
        # Read before the caller locked this chat: a slot freed since then may have
        # been routed by nobody (its router found this chat locked by us).
        ranking.read()
        agent = _lock_a_free_agent(ranking, handed_back_by)
    return agent


def _lock_a_free_agent(ranking: Ranking, handed_back_by: int | None) -> AgentProfile | None:
    cutoff = selectors.heartbeat_cutoff(ranking.now)
    skipped = []
    savepoint = transaction.savepoint()
    for agent_id in ranking.free(handed_back_by=handed_back_by)[:CANDIDATES_TO_TRY]:
        agent = sql.lock_agent(agent_id, skip_locked=True)
        if agent is None:
            skipped.append(agent_id)
        elif _can_take_a_chat(agent, cutoff, ranking):
            transaction.savepoint_commit(savepoint)
            ranking.took(agent.id)
            return agent
    transaction.savepoint_rollback(savepoint)
    if skipped:
        agent = sql.lock_agent(skipped[0], skip_locked=False)
        if agent is not None and _can_take_a_chat(agent, cutoff, ranking):
            ranking.took(agent.id)
            return agent
    return None


def _can_take_a_chat(agent: AgentProfile, cutoff: datetime, ranking: Ranking) -> bool:
    """Under the agent's row lock: available, present, and below capacity. The load is
    counted in a statement of its own, after the lock: a statement that waited for the
    lock reads other tables as they were when it began."""
    present = (
        agent.status == AgentProfile.Status.AVAILABLE
        and agent.last_heartbeat is not None
        and agent.last_heartbeat >= cutoff
        and agent.capacity > 0
    )
    load = selectors.active_load(agent.id) if present else None
    ranking.saw(agent, load, present=present)
    return present and load < agent.capacity
