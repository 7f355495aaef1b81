"""Steady chats: C open conversations, each side sending a message every `interval`
seconds (random phase), one-way latency measured from the send call to receipt on the
other side's socket, both in this one client process (one clock).

The same driver runs against supportdesk (sessions, login, routing, the wire contract)
and against the floor relay (no auth, no routing): only opening the chats differs.
"""

import asyncio
import json
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed

import devstack
from devstack import Peer, Server, Site

from .progress import bounded, note, timed_bar
from .stack import BenchError, Stack
from .stats import CpuMeter, cdf_points, summary

BODY_CHARS = 64
SETUP_CONCURRENCY = 32
DRAIN_CAP = 60.0  # seconds after the last send, at most, to wait for late deliveries
# Every setup step may wait this long on a machine the run itself keeps busy.
SOCKET_OPTIONS = {"open_timeout": 30.0, "frame_timeout": 30.0}


@dataclass
class Chat:
    conversation: int
    visitor: Peer
    agent: Peer


@dataclass
class Chats:
    """Open chats plus every socket behind them, ready to measure and to close."""

    chats: list[Chat]
    agents: list[Peer]
    visitors: list[Peer]
    setup_seconds: float = 0.0
    # (username, Cookie header) of each agent in `agents`, to sign in again.
    agent_logins: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Recorder:
    """Everything the hot path notes: when each message left, when it arrived."""

    sent: dict[str, tuple[float, str]] = field(default_factory=dict)
    delivered: set[str] = field(default_factory=set)
    latency: dict[str, list[float]] = field(default_factory=lambda: {"v2a": [], "a2v": []})
    duplicated: int = 0
    unknown: int = 0
    out_of_order: int = 0
    acks: int = 0
    errors: Counter = field(default_factory=Counter)
    send_failures: int = 0
    lag: list[float] = field(default_factory=list)
    last_seq: dict[tuple[int, str], int] = field(default_factory=dict)

    def on_message(self, peer: Peer, frame: dict) -> None:
        now = time.perf_counter()
        msg_id = frame.get("client_msg_id")
        entry = self.sent.get(msg_id)
        if entry is None:
            self.unknown += 1
            return
        if msg_id in self.delivered:
            self.duplicated += 1
            return
        self.delivered.add(msg_id)
        self.latency[entry[1]].append((now - entry[0]) * 1000)
        key = (frame["conversation"], frame.get("sender", ""))
        if frame["seq"] <= self.last_seq.get(key, -1):
            self.out_of_order += 1
        self.last_seq[key] = frame["seq"]

    def on_ack(self, peer: Peer, frame: dict) -> None:
        self.acks += 1

    def on_error(self, peer: Peer, frame: dict) -> None:
        self.errors[frame.get("code", "?")] += 1

    def handlers(self) -> dict:
        return {"message": self.on_message, "message.ack": self.on_ack, "error": self.on_error}


async def _send_every(
    recorder: Recorder,
    peer: Peer,
    direction: str,
    prefix: str,
    conversation: int | None,
    start: float,
    end: float,
    interval: float,
) -> None:
    """Open loop: each send goes at its scheduled time whether or not the last was
    answered, so a slow server cannot slow the offered load down."""
    loop = asyncio.get_running_loop()
    due = start
    count = 0
    while due < end:
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        recorder.lag.append((loop.time() - due) * 1000)
        msg_id = f"{prefix}{count}"
        frame = {"type": "message.send", "client_msg_id": msg_id, "body": ""}
        if conversation is not None:
            frame["conversation"] = conversation
        frame["body"] = (msg_id + " ").ljust(BODY_CHARS, "x")
        text = json.dumps(frame)
        recorder.sent[msg_id] = (time.perf_counter(), direction)
        try:
            await peer.ws.send(text)
        except ConnectionClosed:
            recorder.send_failures += 1
            del recorder.sent[msg_id]
            return
        count += 1
        due += interval


async def measure(
    opened: Chats,
    *,
    label: str,
    interval: float,
    duration: float,
    drain: float,
    cpu: CpuMeter,
    run_id: str,
) -> dict:
    """Drive the open chats for `duration` seconds; the figures of one run."""
    recorder = Recorder()
    for peer in (*opened.agents, *opened.visitors):
        peer.hot = recorder.handlers()
    loop = asyncio.get_running_loop()
    rng = random.Random(run_id)
    start = loop.time() + 0.5
    end = start + duration
    senders = []
    for index, chat in enumerate(opened.chats):
        for direction, peer, conversation in (
            ("v2a", chat.visitor, None),
            ("a2v", chat.agent, chat.conversation),
        ):
            senders.append(
                _send_every(
                    recorder,
                    peer,
                    direction,
                    f"{run_id}-{index}-{direction}-",
                    conversation,
                    start + rng.uniform(0, interval),
                    end,
                    interval,
                )
            )

    def status() -> str:
        lost = len(recorder.sent) - len(recorder.delivered)
        return f"sent {len(recorder.sent)} delivered {len(recorder.delivered)} in flight {lost}"

    ticker = asyncio.create_task(timed_bar(label, duration + 0.5, status))
    cpu.begin(loop.time())
    try:
        await asyncio.gather(*senders)
        window_end = loop.time()
        usage = cpu.end(window_end)
        # Stragglers: wait while deliveries still come in (up to DRAIN_CAP); what has
        # not arrived after `drain` seconds without any delivery counts as lost.
        last_count, last_progress = -1, window_end
        while len(recorder.delivered) < len(recorder.sent):
            now = loop.time()
            if len(recorder.delivered) != last_count:
                last_count, last_progress = len(recorder.delivered), now
            if now - last_progress > drain or now - window_end > DRAIN_CAP:
                break
            await asyncio.sleep(0.05)
        drained = loop.time() - window_end
    finally:
        ticker.cancel()
    sent = len(recorder.sent)
    delivered = len(recorder.delivered)
    everything = recorder.latency["v2a"] + recorder.latency["a2v"]
    return {
        "chats": len(opened.chats),
        "agents": len(opened.agents),
        "interval_s": interval,
        "duration_s": duration,
        "setup_s": round(opened.setup_seconds, 1),
        "sent": sent,
        "delivered": delivered,
        "lost": sent - delivered,
        "drain_s": round(drained, 1),
        "duplicated": recorder.duplicated,
        "unknown": recorder.unknown,
        "out_of_order": recorder.out_of_order,
        "acks": recorder.acks,
        "errors": dict(recorder.errors),
        "send_failures": recorder.send_failures,
        "offered_per_s": round(sent / duration, 1),
        "delivered_per_s": round(delivered / duration, 1),
        "latency_ms": {
            "all": summary(everything),
            "v2a": summary(recorder.latency["v2a"]),
            "a2v": summary(recorder.latency["a2v"]),
        },
        "cdf_ms": cdf_points(everything),
        "client_send_lag_ms": summary(recorder.lag),
        "cpu_percent": usage,
        # CPU of the relaying processes (daphne workers or floor relays) per message.
        "server_cpu_ms_per_message": round(usage["servers"] * 10 * duration / max(sent, 1), 3),
    }


# --- opening chats on supportdesk ----------------------------------------------------


async def connect_agent(worker: Server, username: str, cookie: str) -> Peer:
    """An agent's dashboard socket, available for chats."""
    peer, _ready = await devstack.connect_agent(worker, cookie, username, **SOCKET_OPTIONS)
    await devstack.set_presence(peer, "available")
    return peer


def widget_hello(site: Site) -> dict:
    """What the widget's `hello` says besides who it is (chat.js): the page embedding it
    and the browser's time zone. The same page every time, as a reload or a reconnect on
    the same page says it (nothing to store then)."""
    page = {"url": f"{site.origin}/shop/cart", "title": "Your cart", "referrer": ""}
    return {"page": page, "timezone": "Europe/Berlin"}


async def connect_visitor(worker: Server, site: Site, name: str) -> Peer:
    """A new visitor's widget socket (session, socket, `hello` answered by `ready`)."""
    token = await devstack.visitor_session(worker, site)
    peer, _ready = await devstack.connect_visitor(
        worker, site, token, name, **widget_hello(site), **SOCKET_OPTIONS
    )
    peer.token = token  # kept to come back as the same visitor (bench/storm.py)
    return peer


async def open_supportdesk(
    stack: Stack, site: Site, agents: list[tuple[str, str]], chats: int, capacity: int
) -> Chats:
    """`agents`: (username, Cookie header) of agents of `capacity` serving `site`."""
    started = time.monotonic()
    workers = stack.workers
    needed = math.ceil(chats / capacity)
    if needed > len(agents):
        raise BenchError(f"{chats} chats need {needed} agents of capacity {capacity}")
    agent_peers = await bounded(
        enumerate(agents[:needed]),
        lambda item: connect_agent(workers[item[0] % len(workers)], *item[1]),
        limit=8,
        description="agents sign in",
        unit="agents",
    )
    visitors = await bounded(
        range(chats),
        lambda i: connect_visitor(workers[i % len(workers)], site, f"visitor{i}"),
        limit=SETUP_CONCURRENCY,
        description="visitors open the widget",
        unit="sockets",
    )

    async def start_chat(visitor: Peer) -> int:
        await visitor.send({"type": "message.send", "client_msg_id": "open", "body": "Hello!"})
        ack = await visitor.recv_until("message.ack")
        await visitor.recv_until("conversation.assigned", timeout=60)
        return ack["conversation"]

    conversations = await bounded(
        visitors,
        start_chat,
        limit=SETUP_CONCURRENCY,
        description="chats start and get an agent",
        unit="chats",
    )
    by_conversation = dict(zip(conversations, visitors, strict=True))
    # Each agent's copy of `conversation.assigned` names the chat; the copies travel
    # on other sockets than the visitors', so some may still be on their way.
    owner: dict[int, Peer] = {}
    deadline = time.monotonic() + 30
    while True:
        for agent in agent_peers:
            while (frame := agent.take(("conversation.assigned",))) is not None:
                owner[frame["conversation"]["id"]] = agent
        missing = set(by_conversation) - set(owner)
        if not missing or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    if missing:
        raise BenchError(f"{len(missing)} conversations assigned but no agent was told")
    opened = [Chat(c, v, owner[c]) for c, v in by_conversation.items()]
    return Chats(opened, agent_peers, visitors, time.monotonic() - started, agents[:needed])


async def close_supportdesk(opened: Chats) -> None:
    """Visitors close their chats (freeing the agents), then every socket closes."""

    async def close_chat(visitor: Peer) -> None:
        visitor.hot = {}
        if visitor.close_code is None:
            await visitor.send({"type": "conversation.close"})
            await visitor.recv_until("conversation.closed", timeout=60)
        await visitor.close()

    await bounded(
        opened.visitors,
        close_chat,
        limit=SETUP_CONCURRENCY,
        description="chats close",
        unit="chats",
    )

    async def sign_off(agent: Peer) -> None:
        # Away before leaving: an agent who just closes the dashboard stays available
        # for the grace period, and the next run's chats would be routed to them.
        if agent.close_code is None:
            await devstack.set_presence(agent, "away")
        await agent.close()

    await asyncio.gather(*(sign_off(agent) for agent in opened.agents))


# --- opening chats on the floor ------------------------------------------------------


async def open_floor(relays: list[Server], chats: int, capacity: int, run: int) -> Chats:
    """Agent k holds chats k*capacity...; ids are unique per run."""
    started = time.monotonic()
    needed = math.ceil(chats / capacity)

    async def connect(path: str, relay: Server, name: str) -> Peer:
        peer = await devstack.connect(
            relay.ws_url(path), name=f"{name}@{relay.name}", origin=relay.origin, **SOCKET_OPTIONS
        )
        await peer.recv_until("ready")
        return peer

    base = run * 1_000_000
    agents = await bounded(
        range(needed),
        lambda k: connect(f"/ws/agent/?agent={base + k}", relays[k % len(relays)], f"agent{k}"),
        limit=SETUP_CONCURRENCY,
        description="floor agents connect",
        unit="sockets",
    )
    visitors = await bounded(
        range(chats),
        lambda i: connect(
            f"/ws/visitor/?conversation={base + i}&agent={base + i // capacity}",
            relays[i % len(relays)],
            f"visitor{i}",
        ),
        limit=SETUP_CONCURRENCY,
        description="floor visitors connect",
        unit="sockets",
    )
    opened = [Chat(base + i, visitors[i], agents[i // capacity]) for i in range(chats)]
    return Chats(opened, agents, visitors, time.monotonic() - started)


async def close_all(opened: Chats) -> None:
    peers = [*opened.visitors, *opened.agents]
    for peer in peers:
        peer.hot = {}
    await bounded(peers, lambda p: p.close(), limit=64, description="sockets close", unit="sockets")


def describe(result: dict) -> None:
    latency = result["latency_ms"]["all"]
    note(
        f"  {result['target']}/{result.get('variant') or '-'} {result['chats']} chats: "
        f"p50 {latency.get('p50')} ms p99 {latency.get('p99')} ms, "
        f"{result['delivered_per_s']} msg/s, lost {result['lost']}, dup {result['duplicated']}"
    )
