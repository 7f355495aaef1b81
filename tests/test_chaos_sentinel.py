"""Redis Sentinel on real processes: REDIS_URL=redis+sentinel://... over a master, its
replica and three redis-sentinel processes; the master killed (-9) mid-chat. The
sentinels promote the replica, every worker's channel layer, cache, rate limits and
health check follow, every socket resumes (4503), and nothing acknowledged is lost or
doubled.

Its Redis processes are its own; the shared PostgreSQL only holds its test database."""

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from devstack import (
    Database,
    RedisServer,
    SentinelServer,
    Server,
    Site,
    request,
    sentinel_installed,
    visitor_session,
    wait_until,
)
from tests.chaos import (
    CLOSE_UNAVAILABLE,
    acked_count,
    all_resumed,
    chaos_enabled,
    converse,
    cpu_model,
    delivery_report,
    print_figures,
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
MASTER_NAME = "supportdesk"
# Shared limits counted (on the primary, through Sentinel) but never reached by this
# load from one address: the counts must follow the failover too. Two agents answer 25
# chats each, faster than a person types: their socket rate is lifted.
COUNTED_LIMITS = {
    "SUPPORTDESK_LIMIT_VISITOR_MESSAGES": "1000 per 10 seconds",
    "SUPPORTDESK_LIMIT_IP_MESSAGES": "100000 per 10 seconds",
    "SUPPORTDESK_LIMIT_VISITOR_CONVERSATIONS": "100 per minute",
    "SUPPORTDESK_LIMIT_IP_CONVERSATIONS": "10000 per minute",
    "SUPPORTDESK_LIMIT_IP_SESSIONS": "10000 per minute",
    "SUPPORTDESK_AGENT_BURST": "1000",
    "SUPPORTDESK_AGENT_RATE": "500",
}


def info(server: RedisServer, field: str) -> str:
    """One field of the server's INFO replication (`role`, `master_link_status`)."""
    client = redis.Redis(port=server.port, socket_timeout=1, decode_responses=True)
    try:
        return str(client.info("replication").get(field))
    finally:
        client.close()


@dataclass
class SentinelStack:
    master: RedisServer
    replica: RedisServer
    sentinels: list[SentinelServer]

    @property
    def url(self) -> str:
        hosts = ",".join(sentinel.address for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def settled(self) -> bool:
        """Every sentinel knows the replica and the two other sentinels (without them no
        majority elects a leader to fail over), and the replica is in sync."""
        for sentinel in self.sentinels:
            client = redis.Redis(port=sentinel.port, socket_timeout=1, decode_responses=True)
            try:
                seen = client.sentinel_master(MASTER_NAME)
            finally:
                client.close()
            if int(seen["num-other-sentinels"]) != 2 or int(seen["num-slaves"]) != 1:
                return False
        return info(self.replica, "master_link_status") == "up"


@pytest.fixture
def sentinel_stack(redis_server: RedisServer, tmp_path: Path):
    """`redis_server` as the master, a replica of it and three sentinels (quorum 2)
    that call the master down after 1 s without an answer."""
    if not sentinel_installed():
        pytest.skip("redis-sentinel is not installed (apt-get install redis-sentinel)")
    replica = RedisServer.start_new(tmp_path, name="replica", replica_of=redis_server.port)
    sentinels = []
    try:
        for n in range(3):
            sentinels.append(
                SentinelServer.start_new(tmp_path, f"sentinel{n}", MASTER_NAME, redis_server.port)
            )
        stack = SentinelStack(redis_server, replica, sentinels)
        # Sentinels find each other through the master's hello channel, every 2 s.
        wait_until(stack.settled, timeout=30, what="the sentinels to know each other")
        yield stack
    finally:
        for sentinel in sentinels:
            sentinel.stop()
        replica.stop()


@pytest.fixture
def e2e_env(sentinel_stack: SentinelStack, e2e_database: Database) -> dict[str, str]:
    """The workers reach Redis through the sentinels only."""
    return process_env(
        DATABASE_URL=e2e_database.url, REDIS_URL=sentinel_stack.url, **COUNTED_LIMITS
    )


async def healthz(worker: Server) -> tuple[int, dict]:
    answer = await request(worker.port, "GET", "/healthz")
    return answer.status, answer.json()


def newest_count(server: RedisServer, rule: str) -> float:
    """When the newest event counted in a `limits` moving window of `rule` on this
    server was counted (epoch seconds; 0 if none was)."""
    client = redis.Redis(port=server.port, socket_timeout=1, decode_responses=True)
    try:
        newest = 0.0
        for key in client.scan_iter(match=f"*{rule}*"):
            if client.type(key) == "list":
                newest = max(newest, float(client.lindex(key, 0) or 0))
        return newest
    finally:
        client.close()


async def test_sentinel_failover_mid_chat_resumes_every_socket_and_loses_nothing(
    daphne_workers: list[Server],
    e2e_env: dict,
    e2e_site: Site,
    e2e_database: Database,
    sentinel_stack: SentinelStack,
    capsys,
):
    master, replica = sentinel_stack.master, sentinel_stack.replica
    for worker in daphne_workers:
        status, health = await healthz(worker)
        assert status == 200
        primary = health["redis_primary"]
        assert (primary["address"], primary["role"]) == (master.address, "master")
    visitors, agents, chats = await start_spread_chats(
        e2e_env, daphne_workers, e2e_site, chats=CHATS, agents=AGENTS
    )
    clients = [*visitors, *agents]
    loop = asyncio.get_running_loop()
    before = acked_count(clients)
    talking = asyncio.gather(*(converse(c, MESSAGES_EACH, pause=(0.05, 0.25)) for c in chats))
    third = before + 2 * MESSAGES_EACH * CHATS // 3
    await wait_all(lambda: acked_count(clients) >= third, "a third of the messages acknowledged")

    connections_before = {c.name: c.connection for c in clients}
    master.kill()
    killed_at, killed_wall = loop.time(), time.time()
    await asyncio.to_thread(
        wait_until,
        lambda: info(replica, "role") == "master",
        timeout=30,
        what="the sentinels to promote the replica",
    )
    promoted_s = loop.time() - killed_at
    await wait_all(lambda: all_resumed(clients, connections_before), "every socket resumed", 60)
    resumed_s = loop.time() - killed_at

    await talking
    await wait_all(lambda: all(not c.outbox for c in clients), "every message acknowledged", 30)
    participants = {chat.conversation: [chat.visitor, chat.agent] for chat in chats}
    await wait_converged(e2e_database, participants, timeout=15)
    report = delivery_report(e2e_database, participants)
    told_to_resync = sum(CLOSE_UNAVAILABLE in c.closes for c in clients)
    print_figures(
        capsys,
        "Sentinel failover (kill -9 the master)",
        {
            "chats": CHATS,
            **report.figures(),
            "sockets": len(clients),
            "told_to_resync": told_to_resync,
            "closes": sum(len(c.closes) for c in clients),
            "kill_to_promoted_s": round(promoted_s, 1),
            "kill_to_all_resumed_s": round(resumed_s, 1),
            "cpu": cpu_model(),
        },
    )
    assert report.problems() == ""
    assert report.messages == CHATS * (1 + 2 * MESSAGES_EACH)
    # Every socket was told to resync (4503) once its worker reached the new master, and
    # resumed there; none was refused for good or left offline.
    assert told_to_resync == len(clients)
    assert {code for c in clients for code in c.closes} == {CLOSE_UNAVAILABLE}
    assert all(c.online for c in clients)

    # Each worker's health names the promoted replica as its primary, now the master.
    for worker in daphne_workers:
        status, health = await healthz(worker)
        assert status == 200
        primary = health["redis_primary"]
        assert (primary["address"], primary["role"]) == (replica.address, "master")
        assert primary["sentinel_master"] == MASTER_NAME
    # The rate limits count on the new master: a new visitor's session at once...
    await visitor_session(daphne_workers[0], e2e_site)
    assert newest_count(replica, "ip-sessions") > killed_wall
    # ...and messages once their worker asks Redis again (after a failed count it lets
    # messages through uncounted for `ratelimits.STORAGE_RETRY_AFTER`): each message
    # is acknowledged before the next, until one was counted there.
    talker, sent = visitors[0], 0
    while newest_count(replica, "ip-messages") <= killed_wall:
        assert sent < 200, "no message counted on the new master"
        await talker.send_message(f"after-failover-{sent}", "Still there?")
        await talker.wait_acked()
        sent += 1
    # ...and Django's cache writes there: what the sweep keeps (the sites last told
    # "agents online") is written again by some worker once removed.
    promoted = redis.Redis(port=replica.port, socket_timeout=1)
    try:
        (online_key,) = promoted.keys("*online-sites")
        promoted.delete(online_key)
        await asyncio.to_thread(
            wait_until,
            lambda: promoted.exists(online_key),
            timeout=10,
            what="a worker's sweep to write the cache on the new master",
        )
    finally:
        promoted.close()
    await stop_all(clients)
