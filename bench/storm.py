"""Reconnect storm: N visitor sockets with open chats, both workers restarted (a deploy),
every socket back and resumed by `last_seq` with nothing lost.

Setup opens N chats as the steady scenario does (routing assigns each to an agent).
Then each agent sends one more message per chat and the workers are stopped as soon as
the agents' acks say those messages committed: some visitors saw theirs, some did not
(the frame died with the worker; every other widget is made to have lost it, so
`ready` must carry it). The workers start again (new ports, as a deploy puts
new processes behind the balancer); at that moment, t0, every widget reconnects after
the widget's own first backoff (a uniform delay in `jitter` seconds, chat.js
`retryLater`), retrying with its backoff if refused, and sends `hello` with the highest
seq it holds. Like the widget, it does not ask for a session again: it has its token.

Checked per visitor: `ready` names its conversation, `ready.conversation.last_seq` is
the agent's last message, and the seqs seen before plus `ready.messages` are exactly
1..last_seq, none twice (resumed, nothing lost). Then each agent sends one more message
per chat and every visitor must get it exactly once, through its new worker's
subscription (the socket is live, not merely answered).

Figures: time from t0 to `ready` per visitor (p50/p99, includes the jitter), from
socket open to `ready`, sockets/s (N over t0 to the last `ready`), retries, and the
CPU the workers, Redis and PostgreSQL spent on the storm, per resumed socket.
"""

import asyncio
import random
import time
from pathlib import Path

from websockets.exceptions import ConnectionClosed, InvalidHandshake

import devstack
from devstack import Peer, Site, StackError

from . import profile
from .progress import bar, bounded, note
from .stack import Stack, cpu_seconds
from .stats import CpuMeter, summary
from .steady import (
    SOCKET_OPTIONS,
    Chats,
    close_supportdesk,
    connect_agent,
    open_supportdesk,
    widget_hello,
)

# The widget's backoff (static/widget/frame/chat.js): the n-th retry waits a uniform
# time in [ceiling/2, ceiling], ceiling = min(30 s, 0.5 s * 2**n).
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STORM_DEADLINE = 120.0  # seconds after t0; a visitor not back by then failed
# The widget waits for `ready` as long as its socket is open (chat.js sets no timeout
# before it); giving up sooner and reconnecting would add handshakes it does not make.
RECONNECT_OPTIONS = {**SOCKET_OPTIONS, "frame_timeout": STORM_DEADLINE}
LIVE_TIMEOUT = 30.0


def _backoff(attempt: int, rng: random.Random) -> float:
    ceiling = min(BACKOFF_MAX, BACKOFF_FIRST * 2**attempt)
    return ceiling / 2 + rng.random() * ceiling / 2


def _seqs(peer: Peer) -> set[int]:
    """Every seq of its conversation this socket was shown (acks, messages, ready)."""
    seen = set()
    for frame in peer.frames:
        kind = frame.get("type")
        if kind in ("message", "message.ack") and "seq" in frame:
            seen.add(frame["seq"])
        elif kind == "ready":
            seen.update(m["seq"] for m in frame.get("messages", []))
    return seen


async def _agents_message(opened: Chats, tag: str) -> dict[int, int]:
    """Each chat's agent sends one message; the seq each was stored under, by chat."""
    owners: dict[int, Peer] = {chat.conversation: chat.agent for chat in opened.chats}

    async def one(conversation: int) -> tuple[int, int]:
        agent = owners[conversation]
        msg_id = f"{tag}-{conversation}"
        await agent.send(
            {
                "type": "message.send",
                "conversation": conversation,
                "client_msg_id": msg_id,
                "body": f"storm {tag}",
            }
        )
        ack = await agent.recv_until("message.ack", timeout=60, client_msg_id=msg_id)
        return conversation, ack["seq"]

    pairs = await bounded(
        list(owners), one, limit=64, description=f"agents send ({tag})", unit="messages"
    )
    return dict(pairs)


async def run_storm(
    stack: Stack,
    site: Site,
    cookies: list[tuple[str, str]],
    *,
    visitors: int,
    capacity: int,
    jitter: float,
    seed: str,
    profile_to: Path | None = None,
) -> dict:
    opened = await open_supportdesk(stack, site, cookies, visitors, capacity)
    rng = random.Random(seed)
    try:
        last = await _agents_message(opened, "before")
        # Stop the workers at once: some visitors' copies are still on their way.
        seen = {chat.conversation: _seqs(chat.visitor) for chat in opened.chats}
        restart_started = time.monotonic()
        stack.start_workers(stack.variant, stack.settings, len(stack.workers))
        restart_s = time.monotonic() - restart_started
        for peer in (*opened.visitors, *opened.agents):
            peer.hot = {}
        # Frames that reached a visitor before its socket died count as seen.
        for chat in opened.chats:
            seen[chat.conversation] |= _seqs(chat.visitor)
        result = await _reconnect_all(stack, site, opened, seen, last, jitter, rng, profile_to)
        opened.visitors = [chat.visitor for chat in opened.chats]
        result["restart_s"] = round(restart_s, 1)
        if result["resumed"] == visitors:
            live, last = await _check_live(opened)
            result["live"] = live
            result["warm"] = await _warm_storm(stack, site, opened, seen, last, jitter, rng)
        return result
    finally:
        await close_supportdesk(opened)


async def _reconnect_all(
    stack: Stack,
    site: Site,
    opened: Chats,
    seen: dict[int, set[int]],
    last: dict[int, int],
    jitter: float,
    rng: random.Random,
    profile_to: Path | None,
) -> dict:
    workers = stack.workers
    loop = asyncio.get_running_loop()
    progress = bar(f"storm: {len(opened.chats)} visitors resume", len(opened.chats), "sockets")
    to_ready: list[float] = []
    open_to_ready: list[float] = []
    retries = 0
    resumed_with_messages = 0
    failures: list[str] = []
    wrong: list[str] = []

    async def visitor(index: int) -> None:
        nonlocal retries, resumed_with_messages
        chat = opened.chats[index]
        old = chat.visitor
        token = old.token
        holds = seen[chat.conversation]
        # The widget resumes from its gapless last seq (chat.js).
        last_seq = 0
        while last_seq + 1 in holds:
            last_seq += 1
        if index % 2 and last_seq > 1:
            # Every other widget lost the agent's last frame with its worker (a SIGTERM
            # rarely loses one; a crash does): it must come back in `ready`.
            last_seq -= 1
        holds = set(range(1, last_seq + 1))
        await asyncio.sleep(jitter * rng.random())
        attempt = 0
        while True:
            worker = workers[(index + attempt) % len(workers)]
            opened_at = time.perf_counter()
            try:
                peer, ready = await devstack.connect_visitor(
                    worker,
                    site,
                    token,
                    f"storm{index}",
                    last_seq=last_seq,
                    **widget_hello(site),
                    **RECONNECT_OPTIONS,
                )
                break
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, StackError) as exc:
                if loop.time() - t0 > STORM_DEADLINE:
                    failures.append(f"visitor {index}: {type(exc).__name__}: {exc}"[:200])
                    return
                retries += 1
                await asyncio.sleep(_backoff(attempt, rng))
                attempt += 1
        now = time.perf_counter()
        to_ready.append((now - t0_perf) * 1000)
        open_to_ready.append((now - opened_at) * 1000)
        peer.token = token
        chat.visitor = peer
        conversation = ready.get("conversation") or {}
        got = [m["seq"] for m in ready.get("messages", [])]
        resumed_with_messages += bool(got)
        expected = last[chat.conversation]
        shown = holds | set(got)
        seen[chat.conversation] = shown  # what the widget holds now
        if (
            conversation.get("id") != chat.conversation
            or conversation.get("last_seq") != expected
            or len(got) != len(set(got))
            or holds & set(got)
            or shown != set(range(1, expected + 1))
        ):
            wrong.append(
                f"visitor {index}: held {sorted(holds)}, asked after {last_seq}, ready "
                f"conversation {conversation.get('id')} last_seq {conversation.get('last_seq')}"
                f" messages {got}, expected 1..{expected}"
            )
        progress.update(1)

    async def agent(index: int) -> None:
        username, cookie = opened.agent_logins[index]
        worker = workers[index % len(workers)]
        for attempt in range(8):
            try:
                old, new = opened.agents[index], await connect_agent(worker, username, cookie)
                opened.agents[index] = new
                for chat in opened.chats:
                    if chat.agent is old:
                        chat.agent = new
                return
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, StackError):
                await asyncio.sleep(_backoff(attempt, rng))
        failures.append(f"agent {username} did not come back")

    # The new workers' database backends open during the storm: listed again at the end.
    meter = CpuMeter({"servers": [w.pid for w in workers], "redis": [stack.redis.process.pid]})
    database = {pid: cpu_seconds(pid) for pid in stack.database_pids()}
    sampler = None
    if profile_to is not None and profile.available():
        sampler = await profile.until_stopped(workers[0].pid, profile_to)
    t0 = loop.time()
    t0_perf = time.perf_counter()
    meter.begin(t0)
    try:
        await asyncio.gather(
            *(visitor(i) for i in range(len(opened.chats))),
            *(agent(i) for i in range(len(opened.agents))),
        )
    finally:
        progress.close()
    usage = meter.end(loop.time())
    profiled = None
    if sampler is not None:
        done, seconds = await sampler.stop()
        if profile_to.exists():
            profiled = profile.summarize(profile_to, seconds)
            profiled["worker"] = workers[0].name
        else:
            profiled = {"error": f"py-spy exited {done.returncode}: {done.stderr[-300:]}"}
    database_s = sum(cpu_seconds(pid) - database.get(pid, 0.0) for pid in stack.database_pids())
    window = (max(to_ready) / 1000) if to_ready else None
    resumed = len(to_ready)
    wall = loop.time() - t0
    server_cpu_s = usage["servers"] / 100 * wall
    result = {
        "visitors": len(opened.chats),
        "agents": len(opened.agents),
        "jitter_s": jitter,
        "resumed": resumed,
        "failed": len(failures),
        "failures": failures[:10],
        "wrong_resume": len(wrong),
        "wrong_examples": wrong[:5],
        "retries": retries,
        "resumed_with_messages": resumed_with_messages,
        "all_resumed_s": round(window, 2) if window else None,
        "sockets_per_s": round(resumed / window, 1) if window else None,
        "t0_to_ready_ms": summary(to_ready),
        "open_to_ready_ms": summary(open_to_ready),
        "cpu_percent": usage,
        "server_cpu_ms_per_socket": round(server_cpu_s * 1000 / max(resumed, 1), 3),
        "redis_cpu_ms_per_socket": round(usage["redis"] / 100 * wall * 1000 / max(resumed, 1), 3),
        "database_cpu_ms_per_socket": round(database_s * 1000 / max(resumed, 1), 3),
        "profile": profiled,
    }
    return result


async def _warm_storm(
    stack: Stack,
    site: Site,
    opened: Chats,
    seen: dict[int, set[int]],
    last: dict[int, int],
    jitter: float,
    rng: random.Random,
) -> dict:
    """Every visitor socket drops and comes back to the same (warm) workers: the cost of
    a resume alone, without the workers' start-up in the figures (a network blip)."""
    for chat in opened.chats:
        seen[chat.conversation] |= _seqs(chat.visitor)
    await bounded(
        opened.visitors, lambda p: p.close(), limit=256, description="drop", unit="sockets"
    )
    warm = await _reconnect_all(stack, site, opened, seen, last, jitter, rng, None)
    opened.visitors = [chat.visitor for chat in opened.chats]
    warm.pop("profile", None)
    return warm


async def _check_live(opened: Chats) -> tuple[dict, dict[int, int]]:
    """Each agent sends one more message per chat; every visitor gets it exactly once."""
    sent = await _agents_message(opened, "after")
    missing = 0
    duplicated = 0

    async def one(chat) -> None:
        nonlocal missing, duplicated
        msg_id = f"after-{chat.conversation}"
        try:
            await chat.visitor.recv_until("message", timeout=LIVE_TIMEOUT, client_msg_id=msg_id)
        except StackError:
            missing += 1
            return
        await chat.visitor.round_trip(timeout=LIVE_TIMEOUT)
        copies = [f for f in chat.visitor.frames if f.get("client_msg_id") == msg_id]
        if len(copies) != 1:
            duplicated += 1

    await bounded(opened.chats, one, limit=256, description="storm: live check", unit="chats")
    note(f"  storm live check: {len(sent)} sent, {missing} missing, {duplicated} duplicated")
    return {"sent": len(sent), "missing": missing, "duplicated": duplicated}, sent


def describe_storm(result: dict) -> None:
    note(
        f"  storm/{result.get('variant')}: {result['resumed']}/{result['visitors']} resumed "
        f"in {result['all_resumed_s']} s ({result['sockets_per_s']} sockets/s), "
        f"t0->ready p50 {result['t0_to_ready_ms'].get('p50')} ms p99 "
        f"{result['t0_to_ready_ms'].get('p99')} ms, wrong {result['wrong_resume']}, "
        f"retries {result['retries']}, servers {result['server_cpu_ms_per_socket']} ms CPU "
        f"per socket, live {result.get('live')}"
    )
    warm = result.get("warm")
    if warm:
        note(
            f"  storm/{result.get('variant')} warm: {warm['resumed']} resumed in "
            f"{warm['all_resumed_s']} s, wrong {warm['wrong_resume']}, servers "
            f"{warm['server_cpu_ms_per_socket']} ms, db {warm['database_cpu_ms_per_socket']} "
            f"ms CPU per socket"
        )
