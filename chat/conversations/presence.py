"""Whether agents can take chats: available or away (chosen, or automatic when idle),
the heartbeat that says a dashboard is alive, and "agents online" for each site's
visitors.

Presence is a heartbeat timestamp in the database, never "a socket exists": a worker
killed with -9 leaves no socket to say goodbye. An agent becoming available, or
coming back, takes queued chats at once.
"""

import logging
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from agents.models import AgentProfile

from .. import events, selectors
from ..models import Site
from . import queue, routing

logger = logging.getLogger(__name__)
Available, Away = AgentProfile.Status.AVAILABLE, AgentProfile.Status.AWAY

# Each agent's latest input (epoch seconds) as reported by any of its dashboards: see
# `report_activity`. In Django's cache, so shared by the workers when the cache is.
_LAST_INPUT_KEY = "supportdesk:agent-input:{}"
_LAST_INPUT_TTL = 24 * 3600
# The enabled sites whose visitors were last told "agents online" (`agents.online`).
_ONLINE_SITES_KEY = "supportdesk:online-sites"


def set_presence(*, agent_id: int, status: str, origin: str | None = None) -> str:
    """Switch an agent between available and away; available agents take queued chats.
    A choice, so it ends an automatic away (`auto_away`) either way: a chosen away is
    not undone by activity."""
    now = timezone.now()
    with transaction.atomic():
        AgentProfile.objects.filter(pk=agent_id).update(
            status=status, auto_away=False, last_heartbeat=now
        )
        events.emit_on_commit(
            events.PresenceChanged(agent_id=agent_id, status=status, origin=origin)
        )
    _slots_changed(agent_id, now=now, routes=status == Available)
    return status


def _slots_changed(agent_id: int, *, now: datetime, routes: bool) -> None:
    """An agent came, went or changed capacity: a slot may be free for the queue, the
    queue's wait estimates changed, and a site may have gone online or offline."""
    sites = selectors.agent_site_ids(agent_id)
    queue.forget_bases(sites)
    if routes:
        routing.assign_queued(site_ids=sites, now=now)
    queue.basis_changed(sites)
    publish_agents_online(now=now)


def report_activity(
    *, agent_id: int, idle_seconds: float, now: datetime | None = None
) -> str | None:
    """An agent's dashboard says how long since the agent last touched it. The server
    judges: an available agent idle for SUPPORTDESK_AUTO_AWAY_SECONDS is put away with
    `auto_away`; an automatically away agent is made available again by its next input.
    A chosen away (`auto_away` false) is never undone here. Returns the new status if
    this report changed it.

    An agent may have dashboards on two machines: the idle one must not put away the
    agent working at the other, so the agent's latest input over all reports is what
    counts (kept in the cache for a day). Race: two reports at once may both read the
    old value and the older input may be written last; the next report (every ping)
    sets it right, and the status change itself is one conditional UPDATE, never two.
    """
    threshold = settings.SUPPORTDESK_AUTO_AWAY_SECONDS
    if threshold <= 0:
        return None
    now = now or timezone.now()
    reported = now.timestamp() - idle_seconds
    key = _LAST_INPUT_KEY.format(agent_id)
    try:
        last_input = max(reported, cache.get(key, reported))
        cache.set(key, last_input, _LAST_INPUT_TTL)
    except Exception as exc:  # a cache outage must not stop presence: use this report
        logger.warning("agent input cache unavailable: %s", exc)
        last_input = reported
    idle_for = now.timestamp() - last_input
    if idle_for >= threshold:
        changed = AgentProfile.objects.filter(pk=agent_id, status=Available).update(
            status=Away, auto_away=True
        )
        status = Away
    else:
        changed = AgentProfile.objects.filter(pk=agent_id, status=Away, auto_away=True).update(
            status=Available, auto_away=False, last_heartbeat=now
        )
        status = Available
    if not changed:
        return None
    logger.info("agent %s is %s automatically (idle %.0f s)", agent_id, status, idle_for)
    events.emit_on_commit(events.PresenceChanged(agent_id=agent_id, status=status, auto=True))
    _slots_changed(agent_id, now=now, routes=status == Available)
    return status


def publish_agents_online(*, now: datetime | None = None) -> None:
    """Tell the visitors of each site whose "agents online" changed since the last look
    (`AgentsOnlineChanged`): on change only, so 10,000 idle visitor sockets cost nothing
    while presence holds still.

    Called after a presence change (at once) and by every sweep (which notices
    heartbeats that lapsed, and so also bounds any flapping to one look per sweep for
    those). The last state is kept in Django's cache. Race: two workers may look at once
    and both announce the same change, or an older look may be written last; visitor
    sockets drop a frame that repeats what they last showed, and the next sweep's look
    corrects a stale cache within SUPPORTDESK_SWEEP_INTERVAL. With no last state (a
    fresh cache) every site is announced once; sockets drop the repeats."""
    online = selectors.online_site_ids(now)
    try:
        before = cache.get(_ONLINE_SITES_KEY)
        cache.set(_ONLINE_SITES_KEY, online, None)
    except Exception as exc:  # no cache, no diff: announce everything this time
        logger.warning("online-sites cache unavailable: %s", exc)
        before = None
    if before is None:
        changed = online | frozenset(Site.objects.filter(enabled=True).values_list("pk", flat=True))
    else:
        changed = online ^ before
    for site_id in changed:
        events.emit_on_commit(events.AgentsOnlineChanged(site_id=site_id, online=site_id in online))


def heartbeat(*, agent_id: int, route: bool = False) -> bool:
    """Refresh an agent's heartbeat; False when the login was deactivated or removed.

    `route` (on connect) also hands queued chats to the agent if it is available.
    """
    now = timezone.now()
    alive = bool(
        AgentProfile.objects.filter(pk=agent_id, user__is_active=True).update(last_heartbeat=now)
    )
    if alive and route:
        # A reconnecting agent may take the queue, and put a site back online.
        _slots_changed(agent_id, now=now, routes=True)
    return alive


def set_capacity(*, agent_id: int, capacity: int) -> None:
    AgentProfile.objects.filter(pk=agent_id).update(capacity=capacity)
    _slots_changed(agent_id, now=timezone.now(), routes=True)


def disconnect_agent(*, user_id: int) -> None:
    """Close every open socket of the agent behind this login (deactivated): each gets
    close 4401 once the deactivation commits, instead of at its next heartbeat."""
    for agent_id in AgentProfile.objects.filter(user_id=user_id).values_list("id", flat=True):
        events.emit_on_commit(events.AgentDeactivated(agent_id=agent_id))
