"""Whole workers failing: one of two killed (-9) while 50 chats are in full flow, and an
agent's worker dying (presence is a heartbeat: offline after the timeout, chats
re-queued after the grace), with a third worker starting meanwhile."""

import asyncio

import pytest

from devstack import Database, Server, Site, visitor_session
from tests.chaos import (
    NO_SHARED_LIMITS,
    acked_count,
    chaos_enabled,
    converse,
    delivery_report,
    heartbeat_age,
    open_chats,
    print_figures,
    start_agent,
    start_visitor,
    stop_all,
    stranded_conversations,
    wait_all,
    wait_converged,
)

pytest_plugins = ["tests.e2e", "tests.chaos"]
pytestmark = [pytest.mark.chaos, pytest.mark.e2e, chaos_enabled]

CHATS = 50
AGENTS = 2  # capacity 25 each: every chat is assigned at once
MESSAGES_EACH = 12  # per side and chat, after the visitor's first


@pytest.fixture
def e2e_overrides() -> dict[str, str]:
    # Two agents answer 25 chats each, faster than a person types: lift their rate.
    return {**NO_SHARED_LIMITS, "SUPPORTDESK_AGENT_BURST": "1000", "SUPPORTDESK_AGENT_RATE": "500"}


async def test_killing_one_of_two_workers_mid_chat_loses_doubles_and_strands_nothing(
    daphne_workers: list[Server],
    e2e_env: dict,
    e2e_site: Site,
    e2e_database: Database,
    capsys,
):
    doomed, survivor = daphne_workers
    loop = asyncio.get_running_loop()
    started = loop.time()

    def homes(n: int) -> list[Server]:
        # Every other client starts on the doomed worker and reconnects to the survivor.
        return [doomed, survivor] if n % 2 == 0 else [survivor, doomed]

    agents = await asyncio.gather(
        *(
            start_agent(e2e_env, f"agent{n}", homes(n), capacity=CHATS // AGENTS)
            for n in range(AGENTS)
        )
    )
    tokens = await asyncio.gather(*(visitor_session(homes(n)[0], e2e_site) for n in range(CHATS)))
    visitors = await asyncio.gather(
        *(start_visitor(f"visitor{n}", homes(n), e2e_site, t) for n, t in enumerate(tokens))
    )
    clients = [*visitors, *agents]
    chats = await open_chats(visitors, agents)
    assert len(chats) == CHATS

    # Everyone talks; a third of the way through, the doomed worker dies mid-flight.
    setup_seconds = loop.time() - started
    before = acked_count(clients)
    talking = asyncio.gather(*(converse(c, MESSAGES_EACH, pause=(0.05, 0.25)) for c in chats))
    third = before + 2 * MESSAGES_EACH * CHATS // 3
    await wait_all(lambda: acked_count(clients) >= third, "a third of the messages acknowledged")
    doomed.kill()
    killed_at = loop.time()
    await talking
    await wait_all(lambda: all(not c.outbox for c in clients), "every message acknowledged", 30)
    participants = {chat.conversation: [chat.visitor, chat.agent] for chat in chats}
    await wait_converged(e2e_database, participants, timeout=15)
    recovered_seconds = loop.time() - killed_at

    report = delivery_report(e2e_database, participants)
    moved = [c for c in clients if c.workers[0] is doomed]
    queued, free_agents = stranded_conversations(e2e_database)
    print_figures(
        capsys,
        "kill -9 one of two workers",
        {
            "chats": CHATS,
            **report.figures(),
            "clients_moved": len(moved),
            "reconnected": sum(c.connection > 1 for c in moved),
            "queued": queued,
            "setup_s": round(setup_seconds, 1),
            "kill_to_converged_s": round(recovered_seconds, 1),
        },
    )
    assert report.problems() == ""
    assert report.messages == CHATS * (1 + 2 * MESSAGES_EACH)
    # Every client of the dead worker noticed (no close frame: 1006) and moved over.
    assert all(c.closes[:1] == [1006] and c.connection > 1 for c in moved)
    assert all(c.worker is survivor and c.online for c in clients)
    # No conversation waits in the queue while an agent has room.
    assert (queued, free_agents) == (0, 0)
    await stop_all(clients)


HEARTBEAT_TIMEOUT = 2.0
AGENT_GRACE = 2.0


@pytest.mark.parametrize(
    "e2e_overrides",
    [
        {
            **NO_SHARED_LIMITS,
            "SUPPORTDESK_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
            "SUPPORTDESK_AGENT_GRACE": str(AGENT_GRACE),
            "SUPPORTDESK_HEARTBEAT_INTERVAL": "0.5",
            "SUPPORTDESK_SWEEP_INTERVAL": "0.5",
        }
    ],
    ids=["2s-timeout-2s-grace"],
)
async def test_agent_whose_worker_dies_goes_offline_and_her_chats_move_to_bob_after_the_grace(
    spawn_workers,
    e2e_env: dict,
    e2e_site: Site,
    e2e_database: Database,
    capsys,
):
    alices_worker, visitors_worker = spawn_workers(2)
    alice = await start_agent(e2e_env, "alice", [alices_worker], capacity=3)
    alice.reconnects = False  # her tab is on the worker that dies, and stays gone
    tokens = [await visitor_session(visitors_worker, e2e_site) for _ in range(2)]
    visitors = [
        await start_visitor(f"v{n + 1}", [visitors_worker], e2e_site, token)
        for n, token in enumerate(tokens)
    ]
    chats = await open_chats(visitors, [alice])

    # A worker that starts mid-chat takes nothing over: the chats carry on with alice.
    (newcomer,) = spawn_workers(1)
    bystander = await start_visitor(
        "v3", [newcomer], e2e_site, await visitor_session(newcomer, e2e_site)
    )
    for chat in chats:
        await chat.visitor.send_message("after-newcomer", "Still there?")
        await chat.agent.send_message(
            "reply-after-newcomer", "Yes!", conversation=chat.conversation
        )
    await wait_converged(
        e2e_database, {c.conversation: [c.visitor, c.agent] for c in chats}, timeout=5
    )
    assert {c: alice.assigned[c] for c in alice.assigned} == {
        chat.conversation: alice.assigned[chat.conversation] for chat in chats
    }
    assert all(chat.visitor.closes == [] for chat in chats)

    # Alice's worker dies: no goodbye, her heartbeat simply stops.
    alices_worker.kill()
    last_beat_age = heartbeat_age(e2e_database, "alice")
    loop = asyncio.get_running_loop()
    killed_at = loop.time()

    # Each visitor is told once that the agent is gone, after timeout + grace.
    def requeued(visitor) -> bool:
        return any(d.sender == "system" for d in visitor.deliveries)

    limit = HEARTBEAT_TIMEOUT + AGENT_GRACE + 5
    await wait_all(lambda: all(requeued(v) for v in visitors), "re-queue notices", limit)
    waited = loop.time() - killed_at
    # Offline, not routed: with room for 3 she gets neither chat back.
    queued, free_agents = stranded_conversations(e2e_database, heartbeat_timeout=HEARTBEAT_TIMEOUT)
    assert (queued, free_agents) == (2, 0)

    # Bob arrives on the new worker and takes both, the re-queued ones first.
    bob = await start_agent(e2e_env, "bob", [newcomer], capacity=2)
    await wait_all(
        lambda: {c.conversation for c in chats} <= set(bob.assigned), "bob's assignments", 5
    )
    for chat in chats:
        await chat.visitor.wait_for(
            lambda v=chat.visitor: any(
                f.get("type") == "conversation.assigned" and f["agent"]["display_name"] == "bob"
                for f in v.frames
            ),
            "assignment to bob",
        )
    print_figures(
        capsys,
        "agent's worker killed",
        {
            "heartbeat_timeout_s": HEARTBEAT_TIMEOUT,
            "grace_s": AGENT_GRACE,
            "requeued_after_s": round(waited, 2),
            "heartbeat_age_at_kill_s": round(last_beat_age, 2),
        },
    )
    # Not before the heartbeat lapsed and the grace ran out (the kill came
    # `last_beat_age` after her last heartbeat), and not much after (sweeps every 0.5 s).
    assert waited >= HEARTBEAT_TIMEOUT + AGENT_GRACE - last_beat_age - 0.1
    assert waited <= HEARTBEAT_TIMEOUT + AGENT_GRACE + 2.0
    system_notes = [[d for d in v.deliveries if d.sender == "system"] for v in visitors]
    assert [len({d.seq for d in notes}) for notes in system_notes] == [1, 1]
    assert bystander.closes == []
    await stop_all([*visitors, bystander, alice, bob])
