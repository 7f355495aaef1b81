"""Two real daphne workers sharing one Redis and one database: routing, the queue and
message delivery as visitors and agents on different workers see them."""

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from devstack import (
    Database,
    Peer,
    Server,
    Site,
    connect_agent,
    connect_visitor,
    create_agent,
    login,
    set_presence,
    visitor_session,
)

pytest_plugins = ["tests.e2e"]
pytestmark = pytest.mark.e2e

QUEUED = "conversation.queued"
ASSIGNED = "conversation.assigned"


@dataclass
class Ledger:
    """What the server acknowledged, per conversation: {client_msg_id: seq}."""

    acked: dict[int, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))

    async def ack(self, peer: Peer, client_msg_id: str) -> dict:
        ack = await peer.recv_until(
            "message.ack", where=lambda f: f["client_msg_id"] == client_msg_id
        )
        conversation = self.acked[ack["conversation"]]
        assert conversation.get(client_msg_id, ack["seq"]) == ack["seq"], ack
        conversation[client_msg_id] = ack["seq"]
        return ack

    def rows(self, conversation: int) -> list[tuple[int, str]]:
        return sorted((seq, msg_id) for msg_id, seq in self.acked[conversation].items())


async def send_message(peer: Peer, frame: dict) -> None:
    await peer.send({"type": "message.send", **frame})


async def available_agent(env: dict, worker: Server, name: str, *, capacity: int) -> Peer:
    """An agent made with `create_agent`, signed in through the login form, on a
    socket to `worker`, with presence available."""
    password = await asyncio.to_thread(create_agent, env, name, capacity=capacity)
    cookie = await login(worker, name, password)
    agent, _ready = await connect_agent(worker, cookie, name)
    await set_presence(agent)
    return agent


def message_frames(peer: Peer, conversation: int) -> list[dict]:
    return [f for f in peer.of_type("message") if f["conversation"] == conversation]


def stored_messages(database: Database, conversation: int) -> list[tuple[int, str]]:
    return [
        (seq, msg_id)
        for seq, msg_id in database.query(
            "SELECT seq, client_msg_id FROM chat_message WHERE conversation_id = %s ORDER BY seq",
            (conversation,),
        )
    ]


def active_load(database: Database) -> dict[str, tuple[int, int]]:
    """{agent display name: (active conversations, capacity)} straight from the database."""
    rows = database.query(
        "SELECT a.display_name, a.capacity, COUNT(c.id) FROM agents_agentprofile a "
        "LEFT JOIN chat_conversation c ON c.agent_id = a.id AND c.status = 'active' "
        "GROUP BY a.id, a.display_name, a.capacity"
    )
    return {name: (load, capacity) for name, capacity, load in rows}


def queue_order(database: Database) -> list[int]:
    rows = database.query(
        "SELECT id FROM chat_conversation WHERE status = 'queued' "
        "ORDER BY queue_priority DESC, queued_at, id"
    )
    return [conversation_id for (conversation_id,) in rows]


def last_position(peer: Peer) -> int | None:
    """The position the widget shows: that of the newest queue reading it got. Two
    workers' frames may arrive out of order; the widget keeps the highest
    `queue_version` (docs/protocol.md), and so does this."""
    queued = peer.of_type(QUEUED)
    if not queued:
        return None
    return max(queued, key=lambda frame: frame["queue_version"])["position"]


# No sweeper: the freed slot must reach the queue through the close itself, not through
# a sweep that happens to run within the second.
@pytest.mark.parametrize("e2e_overrides", [{"SUPPORTDESK_SWEEP_INTERVAL": "0"}], ids=["no-sweeper"])
async def test_six_visitors_two_agents_across_two_workers_fill_capacity_and_queue_the_rest(
    daphne_workers: list[Server], e2e_env: dict, e2e_site: Site, e2e_database: Database
):
    loop = asyncio.get_running_loop()
    w0, w1 = daphne_workers
    alice, bob = await asyncio.gather(
        available_agent(e2e_env, w0, "alice", capacity=2),
        available_agent(e2e_env, w1, "bob", capacity=2),
    )
    agents = {"alice": alice, "bob": bob}

    visitors: list[Peer] = []
    for n in range(6):
        worker = daphne_workers[n % 2]
        token = await visitor_session(worker, e2e_site)
        visitor, ready = await connect_visitor(worker, e2e_site, token, f"v{n + 1}")
        assert ready["conversation"] is None
        visitors.append(visitor)

    # All six ready: their first messages leave at the same instant.
    ledger = Ledger()
    await asyncio.gather(
        *(
            send_message(v, {"client_msg_id": f"{v.name}-first", "body": f"Hello from {v.name}"})
            for v in visitors
        )
    )
    conversation_of: dict[str, int] = {}
    for visitor in visitors:
        ack = await ledger.ack(visitor, f"{visitor.name}-first")
        assert ack["seq"] == 1, ack
        conversation_of[visitor.name] = ack["conversation"]
    assert len(set(conversation_of.values())) == 6
    visitor_of = {conversation_of[v.name]: v for v in visitors}

    # Each agent is handed exactly its capacity, with the visitor's first message.
    agent_of: dict[int, str] = {}
    for name, agent in agents.items():
        for _ in range(2):
            frame = await agent.recv_until(ASSIGNED, timeout=10)
            conversation = frame["conversation"]
            visitor = visitor_of[conversation["id"]]
            assert [(m["seq"], m["client_msg_id"]) for m in conversation["messages"]] == [
                (1, f"{visitor.name}-first")
            ]
            agent_of[conversation["id"]] = name
    assert len(agent_of) == 4

    for conversation_id, name in agent_of.items():
        frame = await visitor_of[conversation_id].recv_until(ASSIGNED)
        assert frame["conversation"]["id"] == conversation_id
        assert frame["agent"]["display_name"] == name

    # The two left over wait in the queue at distinct positions, oldest first.
    queued_ids = queue_order(e2e_database)
    assert sorted(queued_ids) == sorted(set(conversation_of.values()) - set(agent_of)), queued_ids
    waiting = [visitor_of[conversation_id] for conversation_id in queued_ids]
    for position, visitor in enumerate(waiting, start=1):
        await visitor.wait_for(
            lambda frames, p=position, v=visitor: last_position(v) == p,
            f"last {QUEUED} to say position {position}",
        )
    await asyncio.gather(*(peer.round_trip() for peer in [*visitors, *agents.values()]))
    assert [last_position(v) for v in waiting] == [1, 2]
    assert {v.name for v in visitors if v.of_type(ASSIGNED)} == {
        visitor_of[c].name for c in agent_of
    }
    assert all(len(v.of_type(ASSIGNED)) == 1 for v in visitors if v.of_type(ASSIGNED))
    assert {name: len(agent.of_type(ASSIGNED)) for name, agent in agents.items()} == {
        "alice": 2,
        "bob": 2,
    }
    assert active_load(e2e_database) == {"alice": (2, 2), "bob": (2, 2)}

    # Alice closes a chat: the oldest queued visitor gets her within a second, and the
    # other moves up to position 1.
    oldest, last = waiting
    closing = next(c for c, name in agent_of.items() if name == "alice")
    marks = {peer.name: peer.mark() for peer in [oldest, last, alice, visitor_of[closing]]}
    started = loop.time()
    await alice.send({"type": "conversation.close", "conversation": closing})
    assigned = await oldest.recv_until(ASSIGNED, timeout=5, since=marks[oldest.name])
    elapsed = loop.time() - started
    assert elapsed < 1.0, f"the freed slot took {elapsed:.2f}s to reach the oldest visitor"
    assert assigned["conversation"]["id"] == conversation_of[oldest.name]
    assert assigned["agent"]["display_name"] == "alice"
    await last.recv_until(QUEUED, where=lambda f: f["position"] == 1, since=marks[last.name])
    closed_frames = [
        await peer.recv_until("conversation.closed", since=marks[peer.name])
        for peer in (alice, visitor_of[closing])
    ]
    assert all(
        f == {"type": "conversation.closed", "conversation": closing, "by": "agent"}
        for f in closed_frames
    ), closed_frames
    handed = await alice.recv_until(ASSIGNED, since=marks[alice.name])
    assert handed["conversation"]["id"] == conversation_of[oldest.name]
    agent_of.pop(closing)
    agent_of[conversation_of[oldest.name]] = "alice"
    assert active_load(e2e_database) == {"alice": (2, 2), "bob": (2, 2)}

    # Every active pair talks both ways at once.
    per_side = 4
    sent: dict[tuple[int, str], list[str]] = {}
    outgoing = []
    for conversation_id, name in agent_of.items():
        visitor = visitor_of[conversation_id]
        sent[conversation_id, "visitor"] = [f"{visitor.name}-m{i}" for i in range(per_side)]
        sent[conversation_id, "agent"] = [
            f"{name}-c{conversation_id}-m{i}" for i in range(per_side)
        ]
        outgoing.append(
            (visitor, [{"client_msg_id": m, "body": m} for m in sent[conversation_id, "visitor"]])
        )
        outgoing.append(
            (
                agents[name],
                [
                    {"conversation": conversation_id, "client_msg_id": m, "body": m}
                    for m in sent[conversation_id, "agent"]
                ],
            )
        )

    async def send_all(peer: Peer, frames: list[dict]) -> None:
        for frame in frames:
            await send_message(peer, frame)

    await asyncio.gather(*(send_all(peer, frames) for peer, frames in outgoing))
    for conversation_id, name in agent_of.items():
        visitor, agent = visitor_of[conversation_id], agents[name]
        for msg_id in sent[conversation_id, "visitor"]:
            await ledger.ack(visitor, msg_id)
            await agent.recv_until("message", where=lambda f, m=msg_id: f["client_msg_id"] == m)
        for msg_id in sent[conversation_id, "agent"]:
            await ledger.ack(agent, msg_id)
            await visitor.recv_until("message", where=lambda f, m=msg_id: f["client_msg_id"] == m)
    await asyncio.gather(*(peer.round_trip() for peer in [*visitors, *agents.values()]))

    for conversation_id, name in agent_of.items():
        visitor, agent = visitor_of[conversation_id], agents[name]
        acked = ledger.acked[conversation_id]
        last_seq = 1 + 2 * per_side
        assert sorted(acked.values()) == list(range(1, last_seq + 1)), acked
        # Each side got each of the other's messages exactly once, in seq order.
        for receiver, other_side in ((visitor, "agent"), (agent, "visitor")):
            frames = message_frames(receiver, conversation_id)
            assert [f["client_msg_id"] for f in frames] == sent[conversation_id, other_side], (
                f"{receiver.name} in conversation {conversation_id}: {frames}"
            )
            assert [f["seq"] for f in frames] == [
                acked[m] for m in sent[conversation_id, other_side]
            ]
            assert all(f["sender"] == other_side for f in frames)
        # What the agent knows (history at assignment, its acks, frames) covers 1..N once.
        history = next(
            f["conversation"]["messages"]
            for f in agent.of_type(ASSIGNED)
            if f["conversation"]["id"] == conversation_id
        )
        seen = [m["seq"] for m in history] + [
            f["seq"] for f in message_frames(agent, conversation_id)
        ]
        seen += [acked[m] for m in sent[conversation_id, "agent"]]
        assert sorted(seen) == list(range(1, last_seq + 1)), seen

    # The database agrees: nobody over capacity, exactly the acknowledged rows.
    assert all(load <= capacity for load, capacity in active_load(e2e_database).values())
    for conversation_id in conversation_of.values():
        assert stored_messages(e2e_database, conversation_id) == ledger.rows(conversation_id)
    assert [p.name for p in [*visitors, *agents.values()] if p.close_code is not None] == []

    await asyncio.gather(*(peer.close() for peer in [*visitors, *agents.values()]))


async def test_messages_sent_while_visitor_is_offline_arrive_once_in_order_on_resume(
    daphne_workers: list[Server], e2e_env: dict, e2e_site: Site, e2e_database: Database
):
    worker_a, worker_b = daphne_workers
    alice = await available_agent(e2e_env, worker_a, "alice", capacity=2)
    token = await visitor_session(worker_a, e2e_site)
    visitor, _ready = await connect_visitor(worker_a, e2e_site, token, "v1")
    ledger = Ledger()

    await send_message(visitor, {"client_msg_id": "v-1", "body": "My parcel never came"})
    conversation = (await ledger.ack(visitor, "v-1"))["conversation"]
    await visitor.recv_until(ASSIGNED, timeout=10)
    await alice.recv_until(ASSIGNED, timeout=10)
    await send_message(alice, {"conversation": conversation, "client_msg_id": "a-1", "body": "Hi!"})
    await ledger.ack(alice, "a-1")
    seen = (await visitor.recv_until("message"))["seq"]
    assert seen == 2

    # The visitor's tab goes away; alice keeps writing.
    await visitor.close()
    missed = [f"a-offline-{i}" for i in range(5)]
    for msg_id in missed:
        await send_message(
            alice, {"conversation": conversation, "client_msg_id": msg_id, "body": msg_id}
        )
    for msg_id in missed:
        await ledger.ack(alice, msg_id)

    # It comes back on the other worker and is given exactly what it missed, in order.
    visitor, ready = await connect_visitor(worker_b, e2e_site, token, "v1-back", last_seq=seen)
    assert [(m["seq"], m["client_msg_id"], m["sender"]) for m in ready["messages"]] == [
        (seq, msg_id, "agent") for seq, msg_id in enumerate(missed, start=3)
    ]
    assert ready["conversation"]["status"] == "active"
    assert ready["conversation"]["agent"] == {"display_name": "alice"}

    # Afterwards only new messages arrive as frames, none of the missed ones again.
    after = ["a-after-1", "a-after-2"]
    await send_message(visitor, {"client_msg_id": "v-2", "body": "Thanks, still here"})
    for msg_id in after:
        await send_message(
            alice, {"conversation": conversation, "client_msg_id": msg_id, "body": msg_id}
        )
    await ledger.ack(visitor, "v-2")
    for msg_id in after:
        await ledger.ack(alice, msg_id)
        await visitor.recv_until("message", where=lambda f, m=msg_id: f["client_msg_id"] == m)
    await alice.recv_until("message", where=lambda f: f["client_msg_id"] == "v-2")
    await visitor.round_trip()
    assert [f["client_msg_id"] for f in visitor.of_type("message")] == after

    # Gone again; this time alice writes while the visitor is reconnecting.
    last_seen = max(f["seq"] for f in visitor.of_type("message"))
    last_seen = max(last_seen, ledger.acked[conversation]["v-2"])
    await visitor.close()
    racing = [f"a-race-{i}" for i in range(6)]

    async def alice_writes() -> None:
        for msg_id in racing:
            await send_message(
                alice, {"conversation": conversation, "client_msg_id": msg_id, "body": msg_id}
            )
            await ledger.ack(alice, msg_id)

    connecting = asyncio.create_task(
        connect_visitor(worker_b, e2e_site, token, "v1-again", last_seq=last_seen)
    )
    await alice_writes()
    visitor, ready = await connecting
    from_ready = [m["client_msg_id"] for m in ready["messages"]]
    for msg_id in racing:
        if msg_id not in from_ready:
            await visitor.recv_until("message", where=lambda f, m=msg_id: f["client_msg_id"] == m)
    await visitor.round_trip()
    delivered = from_ready + [f["client_msg_id"] for f in visitor.of_type("message")]
    assert delivered == racing, f"ready: {ready['messages']}\nframes: {visitor.of_type('message')}"
    seqs = [m["seq"] for m in ready["messages"]] + [f["seq"] for f in visitor.of_type("message")]
    assert seqs == [ledger.acked[conversation][m] for m in racing]

    # The agent's sync answers exactly the messages after N, in order.
    mark = alice.mark()
    await alice.send({"type": "sync", "conversation": conversation, "after_seq": seen})
    sync = await alice.recv_until("sync", since=mark)
    stored = stored_messages(e2e_database, conversation)
    assert sync["last_seq"] == stored[-1][0]
    assert [(m["seq"], m["client_msg_id"]) for m in sync["messages"]] == [
        row for row in stored if row[0] > seen
    ]
    assert stored == ledger.rows(conversation)
    assert [seq for seq, _ in stored] == list(range(1, len(stored) + 1))

    await asyncio.gather(visitor.close(), alice.close())


async def test_worker_killed_mid_chat_strands_no_conversation_and_loses_no_message(
    daphne_workers: list[Server], e2e_env: dict, e2e_site: Site, e2e_database: Database
):
    doomed, survivor = daphne_workers
    alice = await available_agent(e2e_env, survivor, "alice", capacity=1)
    tokens = [await visitor_session(doomed, e2e_site) for _ in range(2)]
    chatting, _ = await connect_visitor(doomed, e2e_site, tokens[0], "v1")
    waiting, _ = await connect_visitor(doomed, e2e_site, tokens[1], "v2")
    ledger = Ledger()

    await send_message(chatting, {"client_msg_id": "v1-1", "body": "Hello?"})
    conversation = (await ledger.ack(chatting, "v1-1"))["conversation"]
    await chatting.recv_until(ASSIGNED, timeout=10)
    await send_message(waiting, {"client_msg_id": "v2-1", "body": "Me too"})
    queued_conversation = (await ledger.ack(waiting, "v2-1"))["conversation"]
    await waiting.recv_until(QUEUED, where=lambda f: f["position"] == 1)
    await send_message(
        alice, {"conversation": conversation, "client_msg_id": "a-1", "body": "Yes?"}
    )
    await ledger.ack(alice, "a-1")
    seen = (await chatting.recv_until("message"))["seq"]

    # The visitor's worker dies with a message in flight and no goodbye.
    await send_message(chatting, {"client_msg_id": "v1-2", "body": "It is about my order"})
    doomed.kill()
    assert await chatting.wait_closed() == 1006
    await waiting.wait_closed()
    offline = ["a-2", "a-3"]
    for msg_id in offline:
        await send_message(
            alice, {"conversation": conversation, "client_msg_id": msg_id, "body": msg_id}
        )
        await ledger.ack(alice, msg_id)

    # On the other worker, the visitor resumes from last_seq and resends what was never
    # acknowledged, with the same client_msg_id: stored once either way.
    chatting, ready = await connect_visitor(survivor, e2e_site, tokens[0], "v1-back", last_seq=seen)
    assert ready["conversation"]["status"] == "active"
    from_ready = [m["client_msg_id"] for m in ready["messages"]]
    assert [m for m in from_ready if m != "v1-2"] == offline, ready["messages"]
    await send_message(chatting, {"client_msg_id": "v1-2", "body": "It is about my order"})
    await ledger.ack(chatting, "v1-2")
    await alice.send({"type": "sync", "conversation": conversation, "after_seq": 0})
    sync = await alice.recv_until("sync")
    assert [m["client_msg_id"] for m in sync["messages"]].count("v1-2") == 1
    await alice.round_trip()
    assert [f["client_msg_id"] for f in alice.of_type("message")].count("v1-2") <= 1

    # The chat carries on across the surviving worker.
    await send_message(chatting, {"client_msg_id": "v1-3", "body": "Order 1234"})
    await ledger.ack(chatting, "v1-3")
    await alice.recv_until("message", where=lambda f: f["client_msg_id"] == "v1-3")

    # The queued visitor is still in the queue, and gets alice when the chat ends.
    waiting, ready = await connect_visitor(survivor, e2e_site, tokens[1], "v2-back", last_seq=1)
    assert ready["conversation"]["id"] == queued_conversation
    assert ready["conversation"]["queue_position"] == 1
    await alice.send({"type": "conversation.close", "conversation": conversation})
    assigned = await waiting.recv_until(ASSIGNED, timeout=1.0)
    assert assigned["conversation"]["id"] == queued_conversation

    stored = stored_messages(e2e_database, conversation)
    assert stored == ledger.rows(conversation)
    assert [seq for seq, _ in stored] == list(range(1, len(stored) + 1))
    await asyncio.gather(chatting.close(), waiting.close(), alice.close())


async def test_visitors_arriving_at_once_with_no_agent_each_end_at_their_own_queue_position(
    daphne_workers: list[Server], e2e_site: Site, e2e_database: Database
):
    visitors = []
    for n in range(12):
        worker = daphne_workers[n % 2]
        token = await visitor_session(worker, e2e_site)
        visitor, _ready = await connect_visitor(worker, e2e_site, token, f"v{n + 1}")
        visitors.append(visitor)
    ledger = Ledger()
    await asyncio.gather(
        *(send_message(v, {"client_msg_id": "first", "body": "Anyone there?"}) for v in visitors)
    )
    visitor_of = {(await ledger.ack(v, "first"))["conversation"]: v for v in visitors}
    for visitor in visitors:
        await visitor.recv_until(QUEUED)
    await asyncio.gather(*(v.round_trip() for v in visitors))

    # The database's FIFO order is what each visitor was told last.
    order = queue_order(e2e_database)
    assert sorted(order) == sorted(visitor_of)
    told = {
        visitor_of[c].name: [
            (f["position"], f["queue_version"]) for f in visitor_of[c].of_type(QUEUED)
        ]
        for c in order
    }
    assert [last_position(visitor_of[c]) for c in order] == list(range(1, 13)), told
    await asyncio.gather(*(v.close() for v in visitors))
