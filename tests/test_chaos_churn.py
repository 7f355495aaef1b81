"""Churn: 200 clients connecting and disconnecting over and over for a minute leave the
workers' memory and Redis' subscriptions where they were (no leaked groups, channels,
consumers or tasks)."""

import asyncio
import random

import pytest

from devstack import (
    RedisServer,
    Server,
    Site,
    connect_agent,
    connect_visitor,
    create_agent,
    login,
    visitor_session,
)
from tests.chaos import (
    NO_SHARED_LIMITS,
    chaos_enabled,
    open_sockets,
    print_figures,
    pubsub_channels,
)

pytest_plugins = ["tests.e2e", "tests.chaos"]
pytestmark = [pytest.mark.chaos, pytest.mark.e2e, chaos_enabled]

CLIENTS = 200
AGENTS = 4  # of the 200: dashboards churn too (agent groups, heartbeat tasks)
CHURN_SECONDS = 60.0
# The workers' memory grows for the first tens of seconds of churn (allocator arenas,
# ORM threads and their connections, caches) and then stays flat (measured: flat for
# 100 s after 30 s). The baseline is taken once a warm-up slice grows it by under 1 %.
WARMUP_SLICE = 5.0
WARMUP_MAX = 45.0
WARMUP_FLAT = 0.01
RSS_TOLERANCE = 0.10


@pytest.fixture
def e2e_overrides() -> dict[str, str]:
    return dict(NO_SHARED_LIMITS)


class ChurningVisitor:
    """A widget tab that comes and goes: `hello` from the last seq it saw, a line now and
    then, a ping, gone."""

    def __init__(self, worker: Server, site: Site, token: str) -> None:
        self.worker, self.site, self.token = worker, site, token
        self.last_seq = 0
        self.visits = 0

    async def visit(self) -> None:
        self.visits += 1
        tab, ready = await connect_visitor(
            self.worker, self.site, self.token, "churn", last_seq=self.last_seq, frame_timeout=10
        )
        try:
            self.last_seq = max([self.last_seq, *(m["seq"] for m in ready["messages"])])
            if self.visits % 3 == 1:
                line = {"type": "message.send", "client_msg_id": f"m{self.visits}", "body": "hi"}
                await tab.send(line)
                self.last_seq = max(self.last_seq, (await tab.recv_until("message.ack"))["seq"])
            await tab.round_trip()
        finally:
            await tab.close()


class ChurningAgent:
    """A dashboard tab that comes and goes: `ready`, a ping, gone."""

    def __init__(self, worker: Server, cookie: str) -> None:
        self.worker, self.cookie = worker, cookie

    async def visit(self) -> None:
        dashboard, _ready = await connect_agent(
            self.worker, self.cookie, "churn", frame_timeout=10, max_size=None
        )
        try:
            await dashboard.round_trip()
        finally:
            await dashboard.close()


async def settled(workers: list[Server], redis_server: RedisServer, timeout: float = 15) -> bool:
    """Every socket closed on the workers and every subscription gone from Redis.
    Nothing announces either to an outsider: poll, with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if not any(open_sockets(w.port) for w in workers) and not pubsub_channels(redis_server):
            return True
        await asyncio.sleep(0.25)
    return False


async def test_two_hundred_clients_churning_for_a_minute_leave_memory_and_redis_at_baseline(
    daphne_workers: list[Server],
    e2e_env: dict,
    e2e_site: Site,
    redis_server: RedisServer,
    capsys,
):
    passwords = await asyncio.gather(
        *(asyncio.to_thread(create_agent, e2e_env, f"agent{n}", capacity=50) for n in range(AGENTS))
    )
    cookies = [
        await login(daphne_workers[n % 2], f"agent{n}", password)
        for n, password in enumerate(passwords)
    ]
    tokens = [
        await visitor_session(daphne_workers[n % 2], e2e_site) for n in range(CLIENTS - AGENTS)
    ]

    clients = [
        ChurningAgent(daphne_workers[n % 2], cookies[n])
        if n < AGENTS
        else ChurningVisitor(daphne_workers[n % 2], e2e_site, tokens[n - AGENTS])
        for n in range(CLIENTS)
    ]
    loop = asyncio.get_running_loop()
    visits_done = [0]

    async def churn(seconds: float) -> None:
        stop_at = loop.time() + seconds

        async def one_client(client) -> None:
            while loop.time() < stop_at:
                await client.visit()
                visits_done[0] += 1
                # Think time between visits, so the 200 drift apart.
                await asyncio.sleep(random.uniform(0, 0.2))

        await asyncio.gather(*(one_client(client) for client in clients))

    # Warm up with the same churn until the workers' memory stops growing.
    warmed = 0.0
    before = [w.rss() // 1024 for w in daphne_workers]
    while warmed < WARMUP_MAX:
        await churn(WARMUP_SLICE)
        warmed += WARMUP_SLICE
        now = [w.rss() // 1024 for w in daphne_workers]
        flat = all(a <= b * (1 + WARMUP_FLAT) for a, b in zip(now, before, strict=True))
        before = now
        if flat and warmed >= 3 * WARMUP_SLICE:
            break
    assert await settled(daphne_workers, redis_server), (
        [open_sockets(w.port) for w in daphne_workers],
        pubsub_channels(redis_server)[:5],
    )
    baseline = [w.rss() // 1024 for w in daphne_workers]
    visits_done[0] = 0
    samples: list[list[int]] = []

    async def sample() -> None:
        # Memory announces nothing: one sample per period, for the trend in the report.
        while True:
            await asyncio.sleep(CHURN_SECONDS / 6)
            samples.append([w.rss() // 2**20 for w in daphne_workers])

    sampler = asyncio.create_task(sample())
    await churn(CHURN_SECONDS)
    sampler.cancel()
    clean = await settled(daphne_workers, redis_server)
    after = [w.rss() // 1024 for w in daphne_workers]
    change = [(a - b) / b for a, b in zip(after, baseline, strict=True)]
    print_figures(
        capsys,
        "churn",
        {
            "clients": CLIENTS,
            "seconds": CHURN_SECONDS,
            "warm_up_s": warmed,
            "visits": visits_done[0],
            "rss_baseline_mib": [round(b / 1024, 1) for b in baseline],
            "rss_during_mib": samples,
            "rss_after_mib": [round(a / 1024, 1) for a in after],
            "rss_change_pct": [round(100 * c, 1) for c in change],
            "subscriptions_left": len(pubsub_channels(redis_server)),
            "sockets_left": sum(open_sockets(w.port) for w in daphne_workers),
        },
    )
    assert clean, pubsub_channels(redis_server)
    assert all(abs(c) <= RSS_TOLERANCE for c in change)
