"""A channel layer over two Redis servers (REDIS_CHANNEL_URLS), on real processes: every
message delivered once; one shard killed (-9) mid-chat and started again. The chats
whose groups live on it stall and recover when it returns (their sockets resync with
4503); the others never notice.

The primary (REDIS_URL: cache, rate limits) is a third Redis of its own. Its Redis
processes are its own; the shared PostgreSQL only holds its test database."""

import asyncio

import pytest
from channels_redis.utils import _consistent_hash

from devstack import Database, RedisServer, Server, Site, request
from tests.chaos import (
    CLOSE_UNAVAILABLE,
    NO_SHARED_LIMITS,
    acked_count,
    all_resumed,
    chaos_enabled,
    converse,
    delivery_report,
    print_figures,
    ready_frame,
    start_spread_chats,
    stop_all,
    wait_all,
    wait_converged,
)
from tests.e2e import process_env

pytest_plugins = ["tests.e2e", "tests.chaos"]
pytestmark = [pytest.mark.chaos, pytest.mark.e2e, chaos_enabled]

CHATS = 50
AGENTS = 2  # capacity 25 each: every chat is assigned at once
MESSAGES_EACH = 12  # per side and chat, after the visitor's first


@pytest.fixture
def channel_shards(tmp_path):
    """Two redis-servers for the channel layer alone (`redis_server` is the primary)."""
    shards = [RedisServer.start_new(tmp_path, name=f"shard{n}") for n in range(2)]
    yield shards
    for shard in shards:
        shard.stop()


@pytest.fixture
def e2e_env(
    redis_server: RedisServer, channel_shards: list[RedisServer], e2e_database: Database
) -> dict[str, str]:
    return process_env(
        DATABASE_URL=e2e_database.url,
        REDIS_URL=redis_server.url,
        REDIS_CHANNEL_URLS=",".join(shard.url for shard in channel_shards),
        **NO_SHARED_LIMITS,
        # Two agents answer 25 chats each, faster than a person types.
        SUPPORTDESK_AGENT_BURST="1000",
        SUPPORTDESK_AGENT_RATE="500",
    )


def shard_of(group: str, shards: int = 2) -> int:
    """The shard channels-redis puts a group on: its hash of the group's channel name
    (with the layer's default prefix), the same on every worker."""
    return _consistent_hash(f"asgi__group__{group}", shards)


async def test_a_dead_channel_shard_stalls_only_its_chats_which_recover_when_it_returns(
    daphne_workers: list[Server],
    e2e_env: dict,
    e2e_site: Site,
    e2e_database: Database,
    channel_shards: list[RedisServer],
    capsys,
):
    visitors, agents, chats = await start_spread_chats(
        e2e_env, daphne_workers, e2e_site, chats=CHATS, agents=AGENTS
    )
    clients = [*visitors, *agents]
    # The shard that dies carries neither agent's own group (their dashboards serve
    # every chat), so the chats it stalls are those whose visitor's group it carries.
    agent_shards = {shard_of(f"agent.{ready_frame(a)['agent']['id']}") for a in agents}
    assert len(agent_shards) == 1, "both agents' groups must share a shard for this split"
    (survivor,) = agent_shards
    doomed = channel_shards[1 - survivor]
    stalled = [
        c
        for c in chats
        if shard_of(f"visitor.{ready_frame(c.visitor)['visitor']['id']}") != survivor
    ]
    untouched = [c for c in chats if c not in stalled]
    assert stalled and untouched, "the visitors' groups must hash to both shards"

    loop = asyncio.get_running_loop()
    before = acked_count(clients)
    talking = asyncio.gather(*(converse(c, MESSAGES_EACH, pause=(0.05, 0.25)) for c in chats))
    third = before + 2 * MESSAGES_EACH * CHATS // 3
    await wait_all(lambda: acked_count(clients) >= third, "a third of the messages acknowledged")

    doomed.kill()
    down_at = acked_count(clients)
    await wait_all(lambda: acked_count(clients) >= down_at + 150, "acks while a shard is down")
    health = await request(daphne_workers[0].port, "GET", "/healthz")
    acked_while_down = acked_count(clients) - down_at
    connections_before = {c.name: c.connection for c in clients}
    doomed.start()
    back_at = loop.time()
    stalled_visitors = [c.visitor for c in stalled]
    await wait_all(
        lambda: all_resumed(stalled_visitors, connections_before), "the stalled chats resumed", 30
    )
    resumed_s = loop.time() - back_at

    await talking
    await wait_all(lambda: all(not c.outbox for c in clients), "every message acknowledged", 30)
    participants = {chat.conversation: [chat.visitor, chat.agent] for chat in chats}
    await wait_converged(e2e_database, participants, timeout=15)
    report = delivery_report(e2e_database, participants)
    untouched_sockets = [*(c.visitor for c in untouched), *agents]
    print_figures(
        capsys,
        "a channel-layer shard killed and started again",
        {
            "chats": CHATS,
            **report.figures(),
            "stalled_chats": len(stalled),
            "untouched_chats": len(untouched),
            "acked_while_down": acked_while_down,
            "stalled_resynced": sum(CLOSE_UNAVAILABLE in v.closes for v in stalled_visitors),
            "untouched_closes": sum(len(c.closes) for c in untouched_sockets),
            "return_to_resumed_s": round(resumed_s, 1),
        },
    )
    assert report.problems() == ""
    assert report.messages == CHATS * (1 + 2 * MESSAGES_EACH)
    # While it was down, health said which shard, and that the primary was fine.
    assert health.status == 503
    assert health.json()["redis_primary"]["status"] == "ok"
    assert [s["status"] for s in health.json()["redis_channel_shards"]] == [
        "unavailable" if shard is doomed else "ok" for shard in channel_shards
    ]
    # The stalled chats' visitors were told to resync once their shard was back...
    assert all(v.closes == [CLOSE_UNAVAILABLE] and v.online for v in stalled_visitors)
    # ...and the others never noticed: not one close (the agents' dashboards included),
    # every message pushed to them live, none read back on a reconnect.
    assert [c.closes for c in untouched_sockets] == [[] for _ in untouched_sockets]
    for chat in untouched:
        for client in (chat.visitor, chat.agent):
            vias = {d.via for d in client.deliveries if d.conversation == chat.conversation}
            assert vias <= {"message", "history"}, (client.name, vias)
    await stop_all(clients)
