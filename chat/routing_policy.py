"""Who gets the next visitor: the one place that locks agent rows to hand out a chat."""

from datetime import datetime

from agents.models import AgentProfile

from . import selectors

# How many of the least-loaded candidates to try before concluding nobody is free;
# a candidate can fill up between the unlocked ranking and its row lock.
CANDIDATES_TO_TRY = 5


def lock_agent_for(site_id: int, now: datetime) -> AgentProfile | None:
    """Lock and return the least-loaded routable agent of a site, or None.

    Call inside a transaction. Race: two workers may pick the same agent for two
    conversations at once; the row lock on AgentProfile serialises them, and the load
    is counted again under the lock, so the second one sees the first assignment and
    moves on instead of giving the agent more than its capacity.
    """
    ranked = list(
        selectors.routable_agents(site_id, now).values_list("id", flat=True)[:CANDIDATES_TO_TRY]
    )
    cutoff = selectors.heartbeat_cutoff(now)
    for agent_id in ranked:
        agent = AgentProfile.objects.select_for_update().filter(pk=agent_id).first()
        if (
            agent is None
            or agent.status != AgentProfile.Status.AVAILABLE
            or agent.last_heartbeat is None
            or agent.last_heartbeat < cutoff
        ):
            continue
        if selectors.active_load(agent.id) < agent.capacity:
            return agent
    return None
