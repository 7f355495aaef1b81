"""Who gets the next visitor: the one place that locks agent rows to hand out a chat."""

from datetime import datetime

from django.db import connection, transaction

from agents.models import AgentProfile

from . import selectors

# How many of the least-loaded candidates to try before concluding nobody is free;
# a candidate can fill up between the unlocked ranking and its row lock, or be held
# by another router.
CANDIDATES_TO_TRY = 10

AGENT_TABLE = AgentProfile._meta.db_table


class Ranking:
    """The agents present for one site and their load, least loaded first, then the
    one idle longest: read once per routing run (`services.assign_queued`), not once
    per chat, and kept up to date with what the run itself assigns and what it sees
    under each agent's row lock.

    Unlocked, so it only says whose rows are worth locking: the load that decides is
    counted under the lock (`lock_agent_for`). What it cannot know is a slot freed
    after it was read; that slot's own routing run takes care of it, and a router
    reads the ranking again before concluding that nobody can take a chat it locked
    after the ranking was read (`stale`).
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

    `handed_back_by`: the agent who sent this chat back to the queue. They are not
    given it again while any other agent of the site is present
    (`selectors.present_agents`), even one without room right now: the chat waits
    for them. Only when nobody else is present does it go back to that agent, rather
    than leave the visitor waiting for nobody.

    Call inside a transaction. Race: two workers may pick the same agent for two
    conversations at once; the row lock on AgentProfile serialises them, and the load
    is counted again under the lock, so the second one sees the first assignment and
    moves on instead of giving the agent more than its capacity.

    An agent row another router holds is skipped (SKIP LOCKED) at first: a router
    keeps the lock of every candidate it looked at until it commits, so two routers
    waiting for each other's candidates would deadlock (they did, in the burst bench,
    once routers stopped queueing on the oldest chat). Only when no candidate it could
    lock is free does it let go of them all (a savepoint rollback releases row locks)
    and then wait for the first one it skipped, holding no other agent's lock: the
    holder may be a heartbeat, or a router whose assignment fails.
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
        agent = _lock_agent(agent_id, skip_locked=True)
        if agent is None:
            skipped.append(agent_id)
        elif _can_take_a_chat(agent, cutoff, ranking):
            transaction.savepoint_commit(savepoint)
            ranking.took(agent.id)
            return agent
    transaction.savepoint_rollback(savepoint)
    if skipped:
        agent = _lock_agent(skipped[0], skip_locked=False)
        if agent is not None and _can_take_a_chat(agent, cutoff, ranking):
            ranking.took(agent.id)
            return agent
    return None


def _lock_agent(agent_id: int, *, skip_locked: bool) -> AgentProfile | None:
    """`select_for_update([skip_locked]).filter(pk=agent_id).first()`, written out (no
    ORM compile: every assignment runs it). SQLite has no row locks: its IMMEDIATE
    transaction already holds the database's write lock."""
    lock = ""
    if connection.features.has_select_for_update:
        lock = " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"
    rows = AgentProfile.objects.raw(f"SELECT * FROM {AGENT_TABLE} WHERE id = %s{lock}", [agent_id])
    return next(iter(rows), None)


def _can_take_a_chat(agent: AgentProfile, cutoff: datetime, ranking: Ranking) -> bool:
    """Under the agent's row lock: available, present, and below capacity. The load is
    counted in a statement of its own, after the lock: a statement that waited for
    the lock reads other tables as they were when it began."""
    present = (
        agent.status == AgentProfile.Status.AVAILABLE
        and agent.last_heartbeat is not None
        and agent.last_heartbeat >= cutoff
        and agent.capacity > 0
    )
    load = selectors.active_load(agent.id) if present else None
    ranking.saw(agent, load, present=present)
    return present and load < agent.capacity
