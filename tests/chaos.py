"""Fault-injection harness: chat clients that survive faults the way the widget and the
dashboard do, PostgreSQL stop/start (workers are killed and Redis is restarted through
devstack's `Server.kill()` and `RedisServer.stop()`/`start()`) and measurements
(delivery ledgers, Redis pub/sub counts, open sockets).

A test module loads the e2e fixtures and these with
`pytest_plugins = ["tests.e2e", "tests.chaos"]`.

`ChatClient` keeps one `devstack.Peer` at a time, every frame of which goes to the
client's ledger as it arrives. When the socket closes (anything but 4401/4403) it
reconnects to the first of its workers still alive, resumes by seq (a visitor's
`hello.last_seq`, an agent's `sync`) and resends every message never acknowledged, with
the same `client_msg_id`. It does NOT look for gaps while connected: a message that is
not pushed to a live socket stays missing, so the tests measure what the server
delivers, not what a clever client could repair.

PYTEST_DONT_REWRITE: test modules import this before pytest loads it as a plugin.
"""

import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import subprocess
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from devstack import (
    Database,
    Peer,
    RedisServer,
    Server,
    Signal,
    Site,
    StackError,
    connect,
    create_agent,
    login,
    visitor_session,
)

CLOSE_UNAVAILABLE = 4503
# Closes after which the real clients stop instead of reconnecting.
FINAL_CLOSES = frozenset({4401, 4403})
CONNECT_TIMEOUT = 5.0
WAIT_TIMEOUT = 20.0
# A client's pause between reconnect attempts, doubling up to the ceiling (the widget
# and the dashboard back off the same way, with longer delays).
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 1.0
# After an `unavailable` or `rate_limited` error, what was not acknowledged goes again
# this much later, doubling up to the ceiling while the errors go on.
RETRY_FIRST, RETRY_MAX = 0.3, 2.0

# Every test client connects from 127.0.0.1, so the limits shared per client address
# (and per visitor, for the duplicate-send race) would refuse the load itself; the
# per-socket token buckets stay on.
NO_SHARED_LIMITS = {
    "SUPPORTDESK_LIMIT_VISITOR_MESSAGES": "",
    "SUPPORTDESK_LIMIT_IP_MESSAGES": "",
    "SUPPORTDESK_LIMIT_VISITOR_CONVERSATIONS": "",
    "SUPPORTDESK_LIMIT_IP_CONVERSATIONS": "",
    "SUPPORTDESK_LIMIT_IP_SESSIONS": "",
}

chaos_enabled = pytest.mark.skipif(
    not os.environ.get("RUN_CHAOS"),
    reason="fault tests kill processes and restart services: run them with `make chaos`",
)


def print_figures(capsys, title: str, figures: dict[str, Any]) -> None:
    """Show a test's measurements in the terminal, pass or fail (`make chaos` output)."""
    line = ", ".join(f"{name}={value}" for name, value in figures.items())
    with capsys.disabled():
        print(f"\n[chaos] {title}: {line}", flush=True)


# --- clients ------------------------------------------------------------------------

_changed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def changed() -> Signal:
    """One signal per event loop, notified whenever any client of it receives a frame,
    closes or reconnects: waits re-check their condition then."""
    loop = asyncio.get_running_loop()
    signal = _changed.get(loop)
    if signal is None:
        signal = _changed[loop] = Signal()
    return signal


async def wait_all(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait until `condition()` holds, re-checked on every client's every event."""
    if not await changed().wait_for(condition, timeout):
        pytest.fail(f"no {what} within {timeout}s")


@dataclass(frozen=True)
class Delivery:
    conversation: int
    seq: int
    client_msg_id: str | None
    sender: str
    # "message" (a pushed frame), or a snapshot the client asked for or was handed:
    # "ready", "sync", "history" (an agent's copy of `conversation.assigned`).
    via: str
    connection: int


class ChatClient:
    """One participant's socket, kept alive across faults (see the module doc)."""

    def __init__(self, name: str, workers: list[Server]) -> None:
        self.name = name
        self.workers = workers  # reconnects go to the first one still alive
        self.peer: Peer | None = None
        self._ready: dict | None = None  # the current socket's `ready`, once it came
        self.connection = 0  # how many sockets this client has opened
        self.online = False
        self.closes: list[int] = []
        self.failed_connects: list[str] = []
        self.frames: list[dict] = []
        self.deliveries: list[Delivery] = []
        self.held: dict[int, set[int]] = defaultdict(set)  # conversation -> seqs
        self.duplicates: list[Delivery] = []  # pushed frames carrying a seq already held
        self.out_of_order: list[Delivery] = []  # pushed below an earlier push on one socket
        self.acks: dict[str, dict] = {}
        self.ack_mismatches: list[tuple[dict, dict]] = []
        self.errors: list[dict] = []
        # Messages never acknowledged, in the order they were written.
        self.outbox: dict[str, dict] = {}
        self.refused: dict[str, dict] = {}
        self._last_push: dict[tuple[int, int], int] = {}
        self._stopping = False
        # False: a closed socket stays closed (a tab that went away for good).
        self.reconnects = True
        self._task: asyncio.Task | None = None
        self._resend: asyncio.Task | None = None
        self._to_resend: set[str] | None = set()  # None: the whole outbox
        self._retry_delay = RETRY_FIRST

    # lifecycle

    async def start(self) -> dict:
        """Connect (this first time it must work); returns the `ready` frame."""
        ready = await self._connect()
        self._task = asyncio.create_task(self._run(), name=f"client {self.name}")
        return ready

    async def stop(self) -> None:
        self._stopping = True
        if self._resend is not None:
            self._resend.cancel()
        if self.peer is not None:
            await self.peer.close()
        if self._task is not None:
            await self._task

    @property
    def worker(self) -> Server:
        for worker in self.workers:
            if worker.alive:
                return worker
        pytest.fail(f"{self.name}: no worker left alive")

    async def _run(self) -> None:
        while True:
            # Raises what `_receive` raised, if it did: a broken ledger is not a fault.
            code = await self.peer.wait_closed(math.inf)
            self.online = False
            self.closes.append(code)
            self._notify()
            if self._stopping or not self.reconnects or code in FINAL_CLOSES:
                return
            delay = BACKOFF_FIRST
            while not self._stopping:
                try:
                    await self._connect()
                    break
                except (
                    OSError,
                    TimeoutError,
                    ConnectionClosed,
                    InvalidHandshake,
                    StackError,
                ) as exc:
                    self.failed_connects.append(f"{type(exc).__name__}: {exc}")
                    self._notify()
                    # Back off before the next attempt, as the real clients do.
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX)

    async def _connect(self) -> dict:
        worker = self.worker
        self._ready = None
        peer = await connect(
            worker.ws_url(self.path),
            name=f"{self.name}@{worker.name}",
            origin=self.origin(worker),
            cookie=self.cookie,
            open_timeout=CONNECT_TIMEOUT,
            max_size=None,
            hot={None: self._receive},
        )
        self.connection += 1
        try:
            with contextlib.suppress(ConnectionClosed):  # the close is counted below
                await self.greet(peer)
            await peer.changed.wait_for(
                lambda: self._ready is not None or peer.close_code is not None, CONNECT_TIMEOUT
            )
            if self._ready is None and peer.close_code is not None:
                self.closes.append(peer.close_code)
                raise StackError(f"closed with {peer.close_code} before ready")
            if self._ready is None:
                raise TimeoutError(f"no ready within {CONNECT_TIMEOUT}s")
        except BaseException:
            await peer.close()
            raise
        self.peer = peer
        self.online = True
        await self.after_ready()
        for message in list(self.outbox.values()):
            await self._send(message)
        self._notify()
        return self._ready

    def _receive(self, peer: Peer, frame: dict) -> None:
        """Every frame of the current socket, as it arrives: the ledger first, then a
        word to whoever waits on any client."""
        if frame.get("type") == "ready" and self._ready is None:
            self._ready = frame
            self.frames.append(frame)
            self.on_ready(frame)
        else:
            self._handle(frame)
        self._notify()

    def _notify(self) -> None:
        changed().notify()

    async def _send(self, frame: dict) -> None:
        if self.peer is None or not self.online:
            return  # goes out again after the next `ready`
        # A frame lost with its socket goes out again after the next `ready`.
        with contextlib.suppress(ConnectionClosed):
            await self.peer.send(frame)

    # what the client does

    async def send_message(self, client_msg_id: str, body: str, **fields: Any) -> None:
        frame = {"type": "message.send", "client_msg_id": client_msg_id, "body": body, **fields}
        self.outbox[client_msg_id] = frame
        await self._send(frame)

    async def send_frame(self, frame: dict) -> None:
        await self._send(frame)

    async def wait_for(
        self, condition: Callable[[], bool], what: str, timeout: float = WAIT_TIMEOUT
    ) -> None:
        """Wait until `condition()` holds, re-checked on every frame, close and reconnect."""
        if not await changed().wait_for(condition, timeout):
            pytest.fail(self.report(f"{what} within {timeout}s"))

    async def round_trip(self, timeout: float = WAIT_TIMEOUT) -> None:
        """Ping and wait for the pong: what the worker sent before it is in `frames`."""
        mark = len(self.frames)
        await self._send({"type": "ping"})
        await self.wait_for(
            lambda: any(f.get("type") == "pong" for f in self.frames[mark:]), "pong", timeout
        )

    async def wait_acked(self, timeout: float = WAIT_TIMEOUT) -> None:
        await self.wait_for(lambda: not self.outbox, "every message acknowledged", timeout)

    def report(self, what: str) -> str:
        last = "\n  ".join(json.dumps(f)[:300] for f in self.frames[-15:]) or "(none)"
        return (
            f"{self.name}: no {what}; online={self.online} closes={self.closes} "
            f"failed connects={self.failed_connects[-3:]} outbox={list(self.outbox)[:10]}\n"
            f"  last frames:\n  {last}"
        )

    def contiguous(self, conversation: int) -> int:
        """The highest seq up to which this client holds every message."""
        held, seq = self.held[conversation], 0
        while seq + 1 in held:
            seq += 1
        return seq

    # frames

    def _handle(self, frame: dict) -> None:
        self.frames.append(frame)
        kind = frame.get("type")
        if kind == "message.ack":
            msg_id = frame["client_msg_id"]
            earlier = self.acks.setdefault(msg_id, frame)
            if (earlier["conversation"], earlier["seq"]) != (frame["conversation"], frame["seq"]):
                self.ack_mismatches.append((earlier, frame))
            self.outbox.pop(msg_id, None)
            self.held[frame["conversation"]].add(frame["seq"])
            self._retry_delay = RETRY_FIRST
        elif kind == "message":
            self._deliver(frame, "message")
        elif kind == "sync":
            for message in frame["messages"]:
                self._deliver(message, "sync")
        elif kind == "error":
            self.errors.append(frame)
            msg_id = frame.get("client_msg_id")
            if frame["code"] == "unavailable" and msg_id in self.outbox:
                self._resend_later(msg_id)
            elif frame["code"] == "rate_limited":
                # Not acted on, and the refusal does not say which frame it was.
                self._resend_later(None)
            elif msg_id in self.outbox:
                # Refused for good (too long, not found...): never acked, not retried.
                self.refused[msg_id] = self.outbox.pop(msg_id)
        else:
            self.on_frame(frame)

    def _resend_later(self, client_msg_id: str | None) -> None:
        """Send refused frames again later with the same client_msg_id, as the error's
        detail asks: one batch at a time (None: every unacknowledged frame), backing off
        while the refusals go on."""
        if client_msg_id is None or self._to_resend is None:
            self._to_resend = None
        else:
            self._to_resend.add(client_msg_id)
        if self._resend is None or self._resend.done():
            self._resend = asyncio.create_task(self._resend_batch(self._retry_delay))
            self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)

    async def _resend_batch(self, delay: float) -> None:
        await asyncio.sleep(delay)
        batch, self._to_resend = self._to_resend, set()
        for msg_id, frame in list(self.outbox.items()):
            if batch is None or msg_id in batch:
                await self._send(frame)

    def _deliver(self, message: dict, via: str) -> None:
        delivery = Delivery(
            conversation=message["conversation"],
            seq=message["seq"],
            client_msg_id=message["client_msg_id"],
            sender=message["sender"],
            via=via,
            connection=self.connection,
        )
        held = self.held[delivery.conversation]
        if via == "message":
            if delivery.seq in held:
                self.duplicates.append(delivery)
            key = (self.connection, delivery.conversation)
            if delivery.seq < self._last_push.get(key, 0):
                self.out_of_order.append(delivery)
            self._last_push[key] = max(delivery.seq, self._last_push.get(key, 0))
        held.add(delivery.seq)
        self.deliveries.append(delivery)

    # what differs between visitors and agents

    path = ""
    cookie: str | None = None  # an agent's session

    def origin(self, worker: Server) -> str:
        raise NotImplementedError

    async def greet(self, peer: Peer) -> None:
        pass

    def on_ready(self, frame: dict) -> None:
        pass

    async def after_ready(self) -> None:
        pass

    def on_frame(self, frame: dict) -> None:
        pass


class VisitorClient(ChatClient):
    """A widget tab: `hello` with the last seq it holds of its latest conversation."""

    path = "/ws/visitor/"

    def __init__(self, name: str, workers: list[Server], site: Site, token: str) -> None:
        super().__init__(name, workers)
        self.site = site
        self.token = token
        self.conversation: int | None = None

    def origin(self, worker: Server) -> str:
        return self.site.origin

    async def greet(self, peer: Peer) -> None:
        last_seq = self.contiguous(self.conversation) if self.conversation else 0
        hello = {
            "type": "hello",
            "site_key": self.site.key,
            "visitor_token": self.token,
            "last_seq": last_seq,
        }
        await peer.send(hello)

    def on_ready(self, frame: dict) -> None:
        if frame["conversation"] is not None:
            self.conversation = frame["conversation"]["id"]
        for message in frame["messages"]:
            self._deliver(message, "ready")

    def _handle(self, frame: dict) -> None:
        if frame.get("type") == "message.ack" and self.conversation is None:
            self.conversation = frame["conversation"]
        super()._handle(frame)


class AgentClient(ChatClient):
    """A dashboard tab: after `ready`, `sync` for each conversation it lacks messages of."""

    path = "/ws/agent/"

    def __init__(self, name: str, workers: list[Server], cookie: str) -> None:
        super().__init__(name, workers)
        self.cookie = cookie
        self.assigned: dict[int, int] = {}  # conversation -> visitor id
        self._to_sync: list[tuple[int, int]] = []

    def origin(self, worker: Server) -> str:
        return worker.origin

    def on_ready(self, frame: dict) -> None:
        self._to_sync = []
        for conversation in frame["conversations"]:
            self.assigned[conversation["id"]] = conversation["visitor"]["id"]
            have = self.contiguous(conversation["id"])
            if conversation["last_seq"] > have:
                self._to_sync.append((conversation["id"], have))

    async def after_ready(self) -> None:
        for conversation, after_seq in self._to_sync:
            await self._send({"type": "sync", "conversation": conversation, "after_seq": after_seq})

    def on_frame(self, frame: dict) -> None:
        if frame.get("type") == "conversation.assigned":
            conversation = frame["conversation"]
            self.assigned[conversation["id"]] = conversation["visitor"]["id"]
            for message in conversation["messages"]:
                self._deliver(message, "history")

    async def set_available(self) -> None:
        mark = len(self.frames)
        await self.send_frame({"type": "presence", "status": "available"})
        await self.wait_for(
            lambda: any(f.get("type") == "presence" for f in self.frames[mark:]),
            "presence reply",
        )


async def start_visitor(name: str, workers: list[Server], site: Site, token: str) -> VisitorClient:
    client = VisitorClient(name, workers, site, token)
    await client.start()
    return client


async def start_agent(
    env: dict, name: str, workers: list[Server], *, capacity: int, available: bool = True
) -> AgentClient:
    """An agent made with `create_agent`, signed in through the login form."""
    password = await asyncio.to_thread(create_agent, env, name, capacity=capacity)
    cookie = await login(workers[0], name, password)
    client = AgentClient(name, workers, cookie)
    await client.start()
    if available:
        await client.set_available()
    return client


async def stop_all(clients: list[ChatClient]) -> None:
    await asyncio.gather(*(client.stop() for client in clients))


# --- what was delivered ---------------------------------------------------------------


def stored_transcript(database: Database, conversation: int) -> list[tuple[int, str, str]]:
    """(seq, sender, client_msg_id) of a conversation's stored messages, by seq."""
    return [
        (seq, sender, msg_id)
        for seq, sender, msg_id in database.query(
            "SELECT seq, sender, client_msg_id FROM chat_message "
            "WHERE conversation_id = %s ORDER BY seq",
            (conversation,),
        )
    ]


@dataclass
class DeliveryReport:
    """Counted over every participant of every conversation, against the database."""

    messages: int = 0  # stored rows
    lost: list[str] = field(default_factory=list)  # a participant never got a seq
    duplicated: list[str] = field(default_factory=list)  # a seq pushed twice to one client
    out_of_order: list[str] = field(default_factory=list)
    ack_problems: list[str] = field(default_factory=list)  # acked but not stored, or changed
    gaps: list[str] = field(default_factory=list)  # stored seqs not 1..N

    def figures(self) -> dict[str, int]:
        return {
            "messages": self.messages,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "out_of_order": len(self.out_of_order),
            "ack_problems": len(self.ack_problems),
        }

    def problems(self) -> str:
        lines = [*self.lost, *self.duplicated, *self.out_of_order, *self.ack_problems, *self.gaps]
        return "\n".join(lines[:40])


def delivery_report(
    database: Database, participants: dict[int, list[ChatClient]]
) -> DeliveryReport:
    """`participants`: conversation -> the clients that must hold all of it."""
    report = DeliveryReport()
    for conversation, clients in participants.items():
        stored = stored_transcript(database, conversation)
        report.messages += len(stored)
        seqs = [seq for seq, _, _ in stored]
        if seqs != list(range(1, len(seqs) + 1)):
            report.gaps.append(f"conversation {conversation}: stored seqs {seqs}")
        by_id = {msg_id: seq for seq, _, msg_id in stored if msg_id is not None}
        for client in clients:
            missing = sorted(set(seqs) - client.held[conversation])
            if missing:
                report.lost.append(f"{client.name} lacks seqs {missing} of {conversation}")
            for ack in client.acks.values():
                if (
                    ack["conversation"] == conversation
                    and by_id.get(ack["client_msg_id"]) != (ack["seq"])
                ):
                    report.ack_problems.append(f"{client.name}: {ack} is not what is stored")
    for client in {c for clients in participants.values() for c in clients}:
        report.duplicated += [f"{client.name}: pushed again {d}" for d in client.duplicates]
        for d in client.out_of_order:
            seen = [
                (e.seq, e.via)
                for e in client.deliveries
                if e.conversation == d.conversation and e.connection == d.connection
            ]
            report.out_of_order.append(f"{client.name}: out of order {d}; that socket got {seen}")
        report.ack_problems += [f"{client.name}: ack changed {m}" for m in client.ack_mismatches]
        report.ack_problems += [f"{client.name}: never acked {m}" for m in client.outbox]
        report.ack_problems += [f"{client.name}: refused {m}" for m in client.refused]
    return report


async def wait_converged(
    database: Database, participants: dict[int, list[ChatClient]], timeout: float
) -> bool:
    """Wait until every client holds every stored message of its conversations; False
    if some never do (the report then counts what is missing)."""
    stored = {c: {s for s, _, _ in stored_transcript(database, c)} for c in participants}

    def converged() -> bool:
        return all(
            stored[c] <= client.held[c] for c, clients in participants.items() for client in clients
        )

    return await changed().wait_for(converged, timeout)


def _timestamp(value: Any) -> datetime | None:
    """A timestamp column as an aware datetime (SQLite hands back text)."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def heartbeat_age(database: Database, username: str) -> float:
    """Seconds since the agent's last heartbeat."""
    ((beat,),) = database.query(
        "SELECT a.last_heartbeat FROM agents_agentprofile a "
        "JOIN auth_user u ON u.id = a.user_id WHERE u.username = %s",
        (username,),
    )
    return (datetime.now(UTC) - _timestamp(beat)).total_seconds()


def stranded_conversations(
    database: Database, *, heartbeat_timeout: float = 30.0
) -> tuple[int, int]:
    """(queued conversations, agents who could take one now: available, heartbeat
    younger than the timeout, below capacity). Both above 0 means a chat is stuck."""
    ((queued,),) = database.query("SELECT COUNT(*) FROM chat_conversation WHERE status = 'queued'")
    agents = database.query(
        "SELECT a.last_heartbeat, a.capacity, (SELECT COUNT(*) FROM chat_conversation c "
        "WHERE c.agent_id = a.id AND c.status = 'active') FROM agents_agentprofile a "
        "WHERE a.status = 'available'"
    )
    now = datetime.now(UTC)
    free = sum(
        1
        for beat, capacity, load in agents
        if beat is not None
        and (now - _timestamp(beat)).total_seconds() < heartbeat_timeout
        and load < capacity
    )
    return queued, free


# --- chats ---------------------------------------------------------------------------


@dataclass
class Chat:
    visitor: VisitorClient
    agent: AgentClient
    conversation: int


async def open_chats(
    visitors: list[VisitorClient], agents: list[AgentClient], timeout: float = WAIT_TIMEOUT
) -> list[Chat]:
    """Each visitor writes a first message; wait until every chat is assigned and its
    agent knows it."""
    for visitor in visitors:
        await visitor.send_message(f"{visitor.name}-hello", f"Hello from {visitor.name}")
    await asyncio.gather(*(v.wait_acked(timeout) for v in visitors))
    by_conversation = {v.conversation: v for v in visitors}
    await wait_all(
        lambda: set(by_conversation) <= {c for a in agents for c in a.assigned},
        "assignment of every chat",
        timeout,
    )
    return [
        Chat(by_conversation[conversation], agent, conversation)
        for agent in agents
        for conversation in agent.assigned
        if conversation in by_conversation
    ]


async def converse(chat: Chat, messages_each: int, *, pause: tuple[float, float]) -> None:
    """Both sides write `messages_each` messages, a random pause apart, without waiting
    for acknowledgements (the clients resend whatever a fault swallowed)."""

    async def side(client: ChatClient, prefix: str, **fields: Any) -> None:
        for n in range(messages_each):
            # Typing speed, not a wait for an event.
            await asyncio.sleep(random.uniform(*pause))
            await client.send_message(f"{prefix}-{n}", f"{prefix} says {n}", **fields)

    await asyncio.gather(
        side(chat.visitor, f"v{chat.conversation}"),
        side(chat.agent, f"a{chat.conversation}", conversation=chat.conversation),
    )


def acked_count(clients: list[ChatClient]) -> int:
    return sum(len(c.acks) for c in clients)


# --- faults -------------------------------------------------------------------------


def pubsub_channels(redis_server: RedisServer) -> list[str]:
    """Every channel some client is subscribed to (each socket's own channel and each
    group a socket of some worker joined)."""
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    try:
        return sorted(name.decode() for name in client.pubsub_channels())
    finally:
        client.close()


class PostgresControl:
    """Stop and start this machine's PostgreSQL cluster (`pg_ctlcluster`, as root)."""

    def __init__(self, version: str) -> None:
        self.version = version

    def _ctl(self, action: str) -> None:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, "main", action],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def running(self) -> bool:
        done = subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, "main", "status"],
            capture_output=True,
            timeout=30,
        )
        return done.returncode == 0

    def stop(self) -> None:
        self._ctl("stop")

    def start(self) -> None:
        self._ctl("start")


@pytest.fixture
def postgres_control(e2e_database: Database) -> Iterator[PostgresControl]:
    """PostgreSQL stop/start; skipped unless the test database is this machine's
    PostgreSQL and we are root. PostgreSQL is always running again afterwards."""
    if e2e_database.backend != "PostgreSQL":
        pytest.skip("PostgreSQL restart: the e2e database is SQLite here (no PostgreSQL)")
    if os.geteuid() != 0:
        pytest.skip("PostgreSQL restart needs root (pg_ctlcluster)")
    versions = (
        sorted(Path("/etc/postgresql").glob("*/main")) if Path("/etc/postgresql").is_dir() else []
    )
    if shutil.which("pg_ctlcluster") is None or not versions:
        pytest.skip("PostgreSQL restart needs pg_ctlcluster and a 'main' cluster")
    control = PostgresControl(versions[-1].parent.name)
    try:
        yield control
    finally:
        if not control.running():
            control.start()


# --- what a client sees during an outage --------------------------------------------


async def refused_socket(
    worker: Server, path: str, *, origin: str, first: dict | None = None, cookie: str | None = None
) -> tuple[int, float]:
    """Open a socket (sending `first` if given) and wait for the server to close it;
    returns (close code, seconds from connecting to the close)."""
    started = time.monotonic()
    peer = await connect(
        worker.ws_url(path),
        name=f"refused@{worker.name}",
        origin=origin,
        cookie=cookie,
        frame_timeout=10,
    )
    if first is not None:
        with contextlib.suppress(ConnectionClosed):
            await peer.send(first)
    code = await peer.wait_closed()
    return code, time.monotonic() - started


# --- process measurements -------------------------------------------------------------


def open_sockets(port: int) -> int:
    """Established TCP connections to a local port (server side), from /proc/net/tcp."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


# --- several Redis servers (tests/test_chaos_sentinel.py, tests/test_chaos_shards.py) ---


async def start_spread_chats(
    env: dict, workers: list[Server], site: Site, *, chats: int, agents: int
) -> tuple[list[VisitorClient], list[AgentClient], list[Chat]]:
    """`chats` visitors and `agents` agents with room for all of them, every other
    client on each of two workers (reconnecting to the other only if its own is gone)."""
    w0, w1 = workers
    homes = [[w0, w1], [w1, w0]]
    agent_clients = await asyncio.gather(
        *(
            start_agent(env, f"agent{n}", homes[n % 2], capacity=-(-chats // agents))
            for n in range(agents)
        )
    )
    tokens = await asyncio.gather(*(visitor_session(homes[n % 2][0], site) for n in range(chats)))
    visitors = await asyncio.gather(
        *(start_visitor(f"visitor{n}", homes[n % 2], site, t) for n, t in enumerate(tokens))
    )
    opened = await open_chats(visitors, agent_clients)
    assert len(opened) == chats
    return list(visitors), list(agent_clients), opened


def all_resumed(clients: list[ChatClient], connections_before: dict[str, int]) -> bool:
    """Every client is on a socket opened after `connections_before` was taken, and
    ready on it."""
    return all(c.online and c.connection > connections_before[c.name] for c in clients)


def ready_frame(client: ChatClient) -> dict:
    """The `ready` of the client's first socket."""
    return next(frame for frame in client.frames if frame.get("type") == "ready")


def cpu_model() -> str:
    """This machine's CPU, for the figures a test prints."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"
