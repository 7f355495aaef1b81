"""Who gets the next visitor: the one place that locks agent rows to hand out a chat."""

from datetime import datetime

from django.db import transaction

from agents.models import AgentProfile

from . import selectors

# How many of the least-loaded candidates to try before concluding nobody is free;
# a candidate can fill up between the unlocked ranking and its row lock, or be held
# by another router.
CANDIDATES_TO_TRY = 10


def lock_agent_for(
    site_id: int, now: datetime, *, handed_back_by: int | None = None
) -> AgentProfile | None:
    """Lock and return the least-loaded routable agent of a site, or None.

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
    candidates = selectors.routable_agents(site_id, now)
    if handed_back_by is not None and (
        selectors.present_agents(now, site_id=site_id).exclude(pk=handed_back_by).exists()
    ):
        candidates = candidates.exclude(pk=handed_back_by)
    ranked = list(candidates.values_list("id", flat=True)[:CANDIDATES_TO_TRY])
    cutoff = selectors.heartbeat_cutoff(now)
    skipped = []
    savepoint = transaction.savepoint()
    for agent_id in ranked:
        agent = AgentProfile.objects.select_for_update(skip_locked=True).filter(pk=agent_id).first()
        if agent is None:
            skipped.append(agent_id)
        elif _can_take_a_chat(agent, cutoff):
            transaction.savepoint_commit(savepoint)
            return agent
    transaction.savepoint_rollback(savepoint)
    if skipped:
        agent = AgentProfile.objects.select_for_update().filter(pk=skipped[0]).first()
        if agent is not None and _can_take_a_chat(agent, cutoff):
            return agent
    return None


def _can_take_a_chat(agent: AgentProfile, cutoff: datetime) -> bool:
    """Under the agent's row lock: available, present, and below capacity."""
    return (
        agent.status == AgentProfile.Status.AVAILABLE
        and agent.last_heartbeat is not None
        and agent.last_heartbeat >= cutoff
        and selectors.active_load(agent.id) < agent.capacity
    )
