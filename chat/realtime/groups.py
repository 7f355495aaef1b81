"""Who hears what: the channel-layer group names, one function each (choosing the
recipients of a frame is a security decision), and the channel-layer event types."""

from typing import Any

# Channel-layer event types; consumers have one handler per type.
# Forward `frame` to the client, except to `skip_channel`; with `only_channel`, to that
# socket alone (a call's signals go to the one tab that holds the call).
FRAME_EVENT = "chat.frame"
QUEUE_EVENT = "chat.queue"  # a site's queue length changed; agents filter by their sites
AGENT_GONE_EVENT = "chat.agent_gone"  # the agent was deactivated: close its sockets
TOKEN_ROTATED_EVENT = "chat.token_rotated"  # the visitor has a new token: close old sockets
VISITOR_MOVED_EVENT = "chat.visitor_moved"  # its token stands for another visitor now
# An agent's canned responses changed (own: that agent's group; shared: AGENTS_GROUP):
# each socket reads its list afresh and sends it.
CANNED_CHANGED_EVENT = "chat.canned_changed"

AGENTS_GROUP = "agents"


def visitor_group(visitor_id: int) -> str:
    """Every socket of one visitor. Recipients are chosen by id from committed rows,
    never from a client's claim, so a frame reaches only that visitor's tabs."""
    return f"visitor.{visitor_id}"


def agent_group(agent_id: int) -> str:
    """Every socket of one agent."""
    return f"agent.{agent_id}"


def site_visitors_group(site_id: int) -> str:
    """Every visitor socket of one site, for what all of them may see alike (whether
    agents are online). Never anything about one visitor's conversation."""
    return f"site.{site_id}.visitors"


def participants(visitor_id: int, agent_id: int | None) -> tuple[str, ...]:
    """Who hears a conversation's messages: its visitor's tabs and its agent's, if any."""
    if agent_id is None:
        return (visitor_group(visitor_id),)
    return (visitor_group(visitor_id), agent_group(agent_id))


def frame_event(
    frame: dict[str, Any], *, skip_channel: str | None = None, only_channel: str | None = None
) -> dict[str, Any]:
    """The channel-layer event that forwards `frame` to each socket of a group, except
    `skip_channel` (the socket that caused it, answered otherwise); or, given
    `only_channel`, to that one socket of the group (the group still decides who may
    hear it: a channel name alone never widens the audience)."""
    event = {"type": FRAME_EVENT, "frame": frame, "skip_channel": skip_channel}
    if only_channel is not None:
        event["only_channel"] = only_channel
    return event
