"""Churn: 200 clients connecting and disconnecting over and over for a minute leave the
workers' memory and Redis' subscriptions where they were (no leaked groups, channels,
consumers or tasks)."""

import asyncio
import json
import random

import pytest
from websockets.asyncio.client import connect

from tests.chaos import (
    NO_SHARED_LIMITS,
    chaos_enabled,
    open_sockets,
    print_figures,
    pubsub_channels,
    rss_kib,
)
from tests.e2e import (
    E2ESite,
    RedisServer,
    Worker,
    create_agent,
    login_agent,
    visitor_session,
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

    def __init__(self, worker: Worker, site: E2ESite, token: str) -> None:
        self.worker, self.site, self.token = worker, site, token
        self.last_seq = 0
        self.visits = 0

    async def visit(self) -> None:
        self.visits += 1
        async with connect(
            self.worker.ws_url("/ws/visitor/"),
            origin=self.site.origin,
            proxy=None,
            compression=None,
        ) as ws:
            hello = {
                "type": "hello",
                "site_key": self.site.key,
                "visitor_token": self.token,
                "last_seq": self.last_seq,
            }
            await ws.send(json.dumps(hello))
            ready = await _until(ws, "ready")
            self.last_seq = max([self.last_seq, *(m["seq"] for m in ready["messages"])])
            if self.visits % 3 == 1:
                line = {"type": "message.send", "client_msg_id": f"m{self.visits}", "body": "hi"}
                await ws.send(json.dumps(line))
                self.last_seq = max(self.last_seq, (await _until(ws, "message.ack"))["seq"])
            await ws.send(json.dumps({"type": "ping"}))
            await _until(ws, "pong")


class ChurningAgent:
    """A dashboard tab that comes and goes: `ready`, a ping, gone."""

    def __init__(self, worker: Worker, cookie: str) -> None:
        self.worker, self.cookie = worker, cookie

    async def visit(self) -> None:
        async with connect(
            self.worker.ws_url("/ws/agent/"),
            origin=self.worker.origin,
            additional_headers={"Cookie": self.cookie},
            proxy=None,
            compression=None,
            max_size=None,
        ) as ws:
            await _until(ws, "ready")
            await ws.send(json.dumps({"type": "ping"}))
            await _until(ws, "pong")


async def _until(ws, frame_type: str) -> dict:
    async with asyncio.timeout(10):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == frame_type:
                return frame


async def settled(workers: list[Worker], redis_server: RedisServer, timeout: float = 15) -> bool:
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
    daphne_workers: list[Worker],
    e2e_env: dict,
    e2e_site: E2ESite,
    redis_server: RedisServer,
    capsys,
):
    passwords = await asyncio.gather(
        *(asyncio.to_thread(create_agent, e2e_env, f"agent{n}", capacity=50) for n in range(AGENTS))
    )
    cookies = [
        await login_agent(daphne_workers[n % 2], f"agent{n}", password)
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
    before = [rss_kib(w.process.pid) for w in daphne_workers]
    while warmed < WARMUP_MAX:
        await churn(WARMUP_SLICE)
        warmed += WARMUP_SLICE
        now = [rss_kib(w.process.pid) for w in daphne_workers]
        flat = all(a <= b * (1 + WARMUP_FLAT) for a, b in zip(now, before, strict=True))
        before = now
        if flat and warmed >= 3 * WARMUP_SLICE:
            break
    assert await settled(daphne_workers, redis_server), (
        [open_sockets(w.port) for w in daphne_workers],
        pubsub_channels(redis_server)[:5],
    )
    baseline = [rss_kib(w.process.pid) for w in daphne_workers]
    visits_done[0] = 0
    samples: list[list[int]] = []

    async def sample() -> None:
        # Memory announces nothing: one sample per period, for the trend in the report.
        while True:
            await asyncio.sleep(CHURN_SECONDS / 6)
            samples.append([rss_kib(w.process.pid) // 1024 for w in daphne_workers])

    sampler = asyncio.create_task(sample())
    await churn(CHURN_SECONDS)
    sampler.cancel()
    clean = await settled(daphne_workers, redis_server)
    after = [rss_kib(w.process.pid) for w in daphne_workers]
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
