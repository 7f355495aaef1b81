"""Burst routing: N visitors (widget already open) each send their first message within
one window, to agents of small capacity; how long until every visitor is placed
(`conversation.assigned`, or `conversation.queued` with a position), and whether any
agent went over capacity, seen in the frames and in the database afterwards.
"""

import asyncio
import contextlib
import time
from collections import Counter
from pathlib import Path

from devstack import Peer, Site

from . import profile
from .progress import bounded, timed_bar
from .stack import Stack
from .stats import CpuMeter, summary
from .steady import SETUP_CONCURRENCY, connect_agent, connect_visitor

PLACEMENT_TIMEOUT = 60.0
SETTLE_TIMEOUT = 15.0


async def run_burst(
    stack: Stack,
    site: Site,
    agents: list[tuple[str, str]],
    *,
    visitors: int,
    window: float,
    capacity: int,
    cpu: CpuMeter,
    profile_to: Path | None = None,
) -> dict:
    """`profile_to`: sample worker 0 with py-spy while the visitors arrive and are placed
    (into that file); the result's `profile` says where its CPU went."""
    workers = stack.workers
    agent_peers = await bounded(
        enumerate(agents),
        lambda item: connect_agent(workers[item[0] % len(workers)], *item[1]),
        limit=8,
        description="burst agents sign in",
        unit="agents",
    )
    visitor_peers = await bounded(
        range(visitors),
        lambda i: connect_visitor(workers[i % len(workers)], site, f"burst{i}"),
        limit=SETUP_CONCURRENCY,
        description="burst visitors open the widget",
        unit="sockets",
    )
    index = {id(peer): i for i, peer in enumerate(visitor_peers)}
    sent_at: dict[int, float] = {}
    placed_at: dict[int, float] = {}
    first_placement: dict[int, str] = {}
    position: dict[int, int] = {}
    queued_in: dict[int, int] = {}  # visitor -> its conversation, from the queued frames
    assigned_visitors: set[int] = set()
    newest_reading: dict[int, int] = {}  # visitor -> highest queue_version seen
    per_agent = Counter()
    everyone_placed = asyncio.Event()

    def on_visitor_frame(peer: Peer, frame: dict) -> None:
        i = index[id(peer)]
        # As the widget does: a frame from an older reading of the queue than one
        # already seen (`queue_version`, docs/protocol.md) arrived late and is dropped.
        version = frame.get("queue_version")
        if version is not None:
            if version < newest_reading.get(i, 0):
                return
            newest_reading[i] = version
        if frame["type"] == "conversation.assigned":
            assigned_visitors.add(i)
            position.pop(i, None)
        else:
            position[i] = frame["position"]
            queued_in[i] = frame["conversation"]
        if i not in placed_at:
            placed_at[i] = time.perf_counter()
            first_placement[i] = frame["type"].split(".")[1]
            if len(placed_at) == visitors:
                everyone_placed.set()

    def on_agent_frame(peer: Peer, frame: dict) -> None:
        per_agent[peer.name] += 1

    for peer in visitor_peers:
        peer.hot = {
            "conversation.assigned": on_visitor_frame,
            "conversation.queued": on_visitor_frame,
        }
    for peer in agent_peers:
        peer.hot = {"conversation.assigned": on_agent_frame}

    async def arrive(i: int, due: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, due - loop.time()))
        sent_at[i] = time.perf_counter()
        await visitor_peers[i].send(
            {"type": "message.send", "client_msg_id": "first", "body": "I need help, please."}
        )

    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    ticker = asyncio.create_task(
        timed_bar("burst: visitors placed", window + 2, lambda: f"{len(placed_at)}/{visitors}")
    )
    sampled = window + 2
    sampler = None
    if profile_to is not None and profile.available():
        sampler = asyncio.create_task(profile.record(workers[0].pid, sampled, profile_to))
    cpu.begin(loop.time())
    try:
        await asyncio.gather(*(arrive(i, start + window * i / visitors) for i in range(visitors)))
        first_send = min(sent_at.values())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everyone_placed.wait(), PLACEMENT_TIMEOUT)
        usage = cpu.end(loop.time())
    finally:
        ticker.cancel()

    slots = len(agents) * capacity
    expect_assigned = min(visitors, slots)
    expect_queued = visitors - expect_assigned
    # Queue positions keep moving for a moment after the last placement: wait until the
    # queued visitors' latest positions are exactly 1..Q, or give up.
    settle_deadline = loop.time() + SETTLE_TIMEOUT
    while loop.time() < settle_deadline:
        if len(assigned_visitors) == expect_assigned and sorted(position.values()) == list(
            range(1, expect_queued + 1)
        ):
            break
        await asyncio.sleep(0.05)

    site_id = stack.database.query("SELECT id FROM chat_site WHERE key = %s", (site.key,))[0][0]
    rows = stack.database.query(
        "SELECT status, agent_id, COUNT(*) FROM chat_conversation WHERE site_id = %s"
        " GROUP BY status, agent_id",
        (site_id,),
    )
    active_per_agent = {agent: n for status, agent, n in rows if status == "active"}
    # The queue as the database orders it, against the last position each queued
    # visitor was told.
    order = stack.database.query(
        "SELECT id FROM chat_conversation WHERE site_id = %s AND status = 'queued'"
        " ORDER BY queue_priority DESC, queued_at, id",
        (site_id,),
    )
    true_position = {conversation: n for n, (conversation,) in enumerate(order, start=1)}
    told_wrong = sum(
        1 for i, told in position.items() if true_position.get(queued_in.get(i)) not in (None, told)
    )
    db_status = Counter()
    for status, _agent, n in rows:
        db_status[status] += n
    placement_ms = [(placed_at[i] - sent_at[i]) * 1000 for i in placed_at if i in sent_at]
    result = {
        "visitors": visitors,
        "agents": len(agents),
        "capacity": capacity,
        "window_s": window,
        "arrival_spread_s": round(max(sent_at.values()) - first_send, 3),
        "placed": len(placed_at),
        "all_placed_s": round(max(placed_at.values()) - first_send, 3)
        if len(placed_at) == visitors
        else None,
        "first_frame": dict(Counter(first_placement.values())),
        "placement_ms": summary(placement_ms),
        # Where in the window the slow placements were: p50 / max ms per tenth of the
        # arrivals, in arrival order.
        "placement_ms_by_arrival_tenth": by_tenth(
            [
                (placed_at[i] - sent_at[i]) * 1000
                for i in sorted(sent_at, key=sent_at.get)
                if i in placed_at
            ]
        ),
        "assigned_seen": len(assigned_visitors),
        "queued_positions_ok": sorted(position.values()) == list(range(1, expect_queued + 1)),
        "queued_told_wrong_position": told_wrong,
        "expected": {"assigned": expect_assigned, "queued": expect_queued},
        "database": dict(db_status),
        "max_active_per_agent_db": max(active_per_agent.values(), default=0),
        "max_assigned_per_agent_frames": max(per_agent.values(), default=0),
        "agents_over_capacity_db": sum(1 for n in active_per_agent.values() if n > capacity),
        "agents_over_capacity_frames": sum(1 for n in per_agent.values() if n > capacity),
        "cpu_percent": usage,
    }
    if sampler is not None:
        done = await sampler
        if done.returncode == 0 and profile_to.exists():
            summary_of_samples = profile.summarize(profile_to, sampled)
            result["profile"] = {"worker": workers[0].name, **summary_of_samples}
        else:
            result["profile"] = {"error": f"py-spy exited {done.returncode}"}
    result["ok"] = (
        result["placed"] == visitors
        and result["agents_over_capacity_db"] == 0
        and result["agents_over_capacity_frames"] == 0
        and db_status.get("active", 0) == expect_assigned
        and db_status.get("queued", 0) == expect_queued
        and result["queued_positions_ok"]
    )

    async def leave(peer: Peer) -> None:
        peer.hot = {}
        await peer.send({"type": "conversation.close"})
        await peer.recv_until("conversation.closed", timeout=60)
        await peer.close()

    await bounded(
        visitor_peers, leave, limit=SETUP_CONCURRENCY, description="burst chats close", unit="chats"
    )
    await asyncio.gather(*(agent.close() for agent in agent_peers))
    return result


def by_tenth(values: list[float]) -> list[list[float]]:
    """[p50, max] of each tenth of `values` (in their order)."""
    tenths = []
    for k in range(10):
        part = sorted(values[len(values) * k // 10 : len(values) * (k + 1) // 10])
        if part:
            tenths.append([round(part[len(part) // 2], 1), round(part[-1], 1)])
    return tenths
