"""The services behind the workers failing mid-chat: Redis restarted (the doorbell),
PostgreSQL restarted (the record). While one is down, everything fails clearly and at
once; once it is back, every message reaches both sides exactly once, in order."""

import asyncio

import pytest

from devstack import Database, RedisServer, Server, Site, request, visitor_session
from tests.chaos import (
    CLOSE_UNAVAILABLE,
    NO_SHARED_LIMITS,
    PostgresControl,
    acked_count,
    chaos_enabled,
    converse,
    delivery_report,
    open_chats,
    print_figures,
    pubsub_channels,
    refused_socket,
    start_agent,
    start_visitor,
    stop_all,
    stranded_conversations,
    wait_all,
    wait_converged,
)

pytest_plugins = ["tests.e2e", "tests.chaos"]
pytestmark = [pytest.mark.chaos, pytest.mark.e2e, chaos_enabled]

# How fast "at once" is: an outage is answered, never waited out.
PROMPT = 2.0


@pytest.fixture
def e2e_overrides() -> dict[str, str]:
    return dict(NO_SHARED_LIMITS)


async def start_chats(env: dict, workers: list[Server], site: Site, chats: int, agents: int):
    """`chats` visitors and `agents` agents (room for all), spread over both workers."""
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
    return list(visitors), list(agent_clients), await open_chats(visitors, agent_clients)


async def outage_figures(workers: list[Server], site: Site) -> dict:
    health = [await request(w.port, "GET", "/healthz") for w in workers]
    session = await request(
        workers[0].port,
        "POST",
        "/api/v1/visitor-sessions",
        headers={"Origin": site.origin},
        json={"site_key": site.key},
    )
    return {"health": health, "session": session}


async def test_redis_restart_mid_chat_loses_and_doubles_nothing_and_fails_clearly_meanwhile(
    daphne_workers: list[Server],
    e2e_env: dict,
    e2e_site: Site,
    e2e_database: Database,
    redis_server: RedisServer,
    capsys,
):
    visitors, agents, chats = await start_chats(e2e_env, daphne_workers, e2e_site, 20, 4)
    clients = [*visitors, *agents]
    before = acked_count(clients)
    talking = asyncio.gather(*(converse(c, 15, pause=(0.1, 0.3)) for c in chats))
    await wait_all(lambda: acked_count(clients) >= before + 100, "100 messages acknowledged")

    redis_server.stop()
    down_at = acked_count(clients)
    # The database still stores and acknowledges what is sent meanwhile.
    await wait_all(lambda: acked_count(clients) >= down_at + 40, "acks while Redis is down")
    while_down = await outage_figures(daphne_workers, e2e_site)
    visitor_refusal = await refused_socket(
        daphne_workers[0],
        "/ws/visitor/",
        origin=e2e_site.origin,
        # A real visitor's other tab: a socket subscribes nothing before its `hello`
        # names a visitor (a bad token is refused 4401 first, Redis or not).
        first={"type": "hello", "site_key": e2e_site.key, "visitor_token": visitors[0].token},
    )
    agent_refusal = await refused_socket(
        daphne_workers[1],
        "/ws/agent/",
        origin=daphne_workers[1].origin,
        cookie=agents[1].cookie,
    )
    back_at = acked_count(clients)
    redis_server.start()

    await talking
    await wait_all(lambda: all(not c.outbox for c in clients), "every message acknowledged", 30)
    participants = {chat.conversation: [chat.visitor, chat.agent] for chat in chats}
    await wait_converged(e2e_database, participants, timeout=15)
    report = delivery_report(e2e_database, participants)
    resynced = sum(CLOSE_UNAVAILABLE in c.closes for c in clients)
    print_figures(
        capsys,
        "Redis restart",
        {
            "chats": len(chats),
            **report.figures(),
            "acked_while_down": back_at - down_at,
            "sockets_told_to_resync": resynced,
            "healthz_s": max(round(a.seconds, 3) for a in while_down["health"]),
            "new_socket_refused_s": round(max(visitor_refusal[1], agent_refusal[1]), 3),
        },
    )
    assert report.problems() == ""
    # Every socket open across the outage was told to resume (4503), and did.
    assert resynced == len(clients)
    assert all(c.online for c in clients)
    assert stranded_conversations(e2e_database)[0] == 0

    # While Redis was down: health said so at once, as JSON; the API (which needs only
    # the database) kept working; new sockets were refused at once with 4503.
    for answer in while_down["health"]:
        assert (answer.status, answer.content_type) == (503, "application/json")
        assert answer.json()["redis"] == "unavailable"
        assert answer.json()["database"] == "ok"
        assert answer.seconds < PROMPT
    assert while_down["session"].status == 201
    assert visitor_refusal[0] == agent_refusal[0] == CLOSE_UNAVAILABLE
    assert max(visitor_refusal[1], agent_refusal[1]) < PROMPT

    # Nothing subscribed is left behind once every client is gone.
    await stop_all(clients)
    assert await subscriptions_drain(redis_server) == []


async def subscriptions_drain(redis_server: RedisServer, timeout: float = 10.0) -> list[str]:
    """The pub/sub channels still subscribed once they stop shrinking (or at the deadline):
    each worker unsubscribes a closed socket's channels as it reaps it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    channels = pubsub_channels(redis_server)
    while channels and loop.time() < deadline:
        # No event announces an unsubscribe to an outsider: poll, with a deadline.
        await asyncio.sleep(0.2)
        channels = pubsub_channels(redis_server)
    return channels


async def test_postgresql_restart_mid_chat_refuses_sends_clearly_and_acks_nothing_it_loses(
    daphne_workers: list[Server],
    e2e_env: dict,
    e2e_site: Site,
    e2e_database: Database,
    postgres_control: PostgresControl,
    capsys,
):
    visitors, agents, chats = await start_chats(e2e_env, daphne_workers, e2e_site, 6, 2)
    clients = [*visitors, *agents]
    # The database stops while the chats are in full flow: some sends race the shutdown.
    talking = asyncio.gather(*(converse(c, 12, pause=(0.05, 0.2)) for c in chats))
    await wait_all(lambda: acked_count(clients) >= 40, "40 messages acknowledged")
    acked_before = {c.name: dict(c.acks) for c in clients}
    await asyncio.to_thread(postgres_control.stop)
    try:
        # Both sides of every chat write while the database is down: refused, not acked.
        for chat in chats:
            await chat.visitor.send_message("during-outage", "Are you still there?")
            await chat.agent.send_message(
                f"during-outage-{chat.conversation}", "Yes!", conversation=chat.conversation
            )

        def refused(client) -> bool:
            return any(
                e["code"] == "unavailable" and e.get("client_msg_id", "").startswith("during")
                for e in client.errors
            )

        await wait_all(lambda: all(refused(c) for c in clients), "unavailable errors")
        unacked = {c.name: sorted(c.outbox) for c in clients}
        while_down = await outage_figures(daphne_workers, e2e_site)
        visitor_refusal = await refused_socket(
            daphne_workers[0],
            "/ws/visitor/",
            origin=e2e_site.origin,
            first={"type": "hello", "site_key": e2e_site.key, "visitor_token": "x"},
        )
        agent_refusal = await refused_socket(
            daphne_workers[1],
            "/ws/agent/",
            origin=daphne_workers[1].origin,
            cookie=agents[1].cookie,
        )
    finally:
        await asyncio.to_thread(postgres_control.start)
    await talking

    # The clients retry with the same client_msg_id until it is stored, and chat on.
    await wait_all(lambda: all(not c.outbox for c in clients), "the refused sends stored", 30)
    await asyncio.gather(*(converse(c, 2, pause=(0.02, 0.1)) for c in chats))
    await wait_all(lambda: all(not c.outbox for c in clients), "messages after the outage")
    participants = {chat.conversation: [chat.visitor, chat.agent] for chat in chats}
    await wait_converged(e2e_database, participants, timeout=15)
    report = delivery_report(e2e_database, participants)
    errors = sum(len(c.errors) for c in clients)
    print_figures(
        capsys,
        "PostgreSQL restart",
        {
            "chats": len(chats),
            **report.figures(),
            "unavailable_errors": errors,
            "healthz_s": max(round(a.seconds, 3) for a in while_down["health"]),
            "api_s": round(while_down["session"].seconds, 3),
            "new_socket_refused_s": round(max(visitor_refusal[1], agent_refusal[1]), 3),
        },
    )
    # What was refused was never acknowledged; every ack (before, during, after) is stored.
    assert all(unacked[c.name] for c in clients), unacked
    assert report.problems() == ""
    assert all(acked_before[c.name].items() <= c.acks.items() for c in clients)
    assert {e["code"] for c in clients for e in c.errors} == {"unavailable"}
    # No socket was dropped for it; the chats just continued.
    assert [c.name for c in clients if c.closes] == []

    for answer in while_down["health"]:
        assert (answer.status, answer.content_type) == (503, "application/json")
        assert answer.json()["database"] == "unavailable"
        assert answer.seconds < PROMPT
    session = while_down["session"]
    assert (session.status, session.content_type) == (503, "application/json")
    assert session.json()["error"] == "unavailable"
    assert session.seconds < PROMPT
    assert visitor_refusal[0] == agent_refusal[0] == CLOSE_UNAVAILABLE
    assert max(visitor_refusal[1], agent_refusal[1]) < PROMPT
    await stop_all(clients)
