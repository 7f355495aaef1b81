"""A client that stops reading while a flood is sent to it: the worker disconnects it
instead of buffering without bound, and the client resumes by seq when it comes back."""

import asyncio
import json
import socket

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from devstack import Database, Server, Site, visitor_session
from tests.chaos import (
    NO_SHARED_LIMITS,
    VisitorClient,
    chaos_enabled,
    open_sockets,
    print_figures,
    start_agent,
    stop_all,
    wait_all,
)

pytest_plugins = ["tests.e2e", "tests.chaos"]
pytestmark = [pytest.mark.chaos, pytest.mark.e2e, chaos_enabled]

SEND_BUFFER = 1024 * 1024  # the worker's bound on unsent bytes per socket, for this test
BODY = "x" * 9_993  # with a 7-character prefix: the longest body the contract allows
FLOOD = 2000  # messages: ~20 MB, far beyond the bound and the kernel's socket buffers
# What the visitor's worker may grow by: the bound, the flood's transient objects, and
# slack (measured: about 1 MiB). Unbounded (a limit of 1 TB), the same flood grew it by
# 16.6 MiB and the socket stayed open; the kernel's socket buffers held the rest.
MAX_GROWTH_MIB = 8


@pytest.fixture
def e2e_overrides() -> dict[str, str]:
    return {
        **NO_SHARED_LIMITS,
        "SUPPORTDESK_WS_SEND_BUFFER": str(SEND_BUFFER),
        # The flood comes from one agent socket as fast as the worker stores it.
        "SUPPORTDESK_AGENT_BURST": "100000",
        "SUPPORTDESK_AGENT_RATE": "100000",
    }


async def stalled_visitor(worker: Server, site: Site, token: str):
    """A widget socket that says hello, writes once, and then stops reading: a small
    receive buffer, and the client library stops pulling frames off the socket once
    a few are queued unread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", worker.port))
    ws = await connect(
        worker.ws_url("/ws/visitor/"),
        sock=sock,
        origin=site.origin,
        proxy=None,
        compression=None,
        max_size=None,
        max_queue=4,
    )
    await ws.send(
        json.dumps({"type": "hello", "site_key": site.key, "visitor_token": token, "last_seq": 0})
    )
    await ws.send(json.dumps({"type": "message.send", "client_msg_id": "help", "body": "Help?"}))
    frames = []
    while not any(f["type"] == "conversation.assigned" for f in frames):
        async with asyncio.timeout(10):
            frames.append(json.loads(await ws.recv()))
    return ws


async def test_a_visitor_that_stops_reading_during_a_flood_is_dropped_and_memory_stays_bounded(
    spawn_workers, e2e_env: dict, e2e_site: Site, e2e_database: Database, capsys
):
    visitors_worker, agents_worker = spawn_workers(2)
    alice = await start_agent(e2e_env, "alice", [agents_worker], capacity=1)
    token = await visitor_session(visitors_worker, e2e_site)
    stalled = await stalled_visitor(visitors_worker, e2e_site, token)
    await wait_all(lambda: len(alice.assigned) == 1, "alice's assignment")
    (conversation,) = alice.assigned
    baseline = visitors_worker.rss() // 1024
    assert open_sockets(visitors_worker.port) == 1

    peak = baseline
    flooding = True

    async def sample_rss() -> None:
        nonlocal peak
        while flooding:
            peak = max(peak, visitors_worker.rss() // 1024)
            # A sampling period: memory announces nothing.
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample_rss())
    loop = asyncio.get_running_loop()
    started = loop.time()
    for n in range(FLOOD):
        await alice.send_message(f"flood-{n}", f"{n:06d} {BODY}", conversation=conversation)
    await alice.wait_acked(timeout=60)
    assert alice.refused == {}
    flood_seconds = loop.time() - started
    # The stalled socket is gone from the worker (no event tells an outsider: poll).
    deadline = loop.time() + 10
    while open_sockets(visitors_worker.port) and loop.time() < deadline:
        await asyncio.sleep(0.1)
    dropped = open_sockets(visitors_worker.port) == 0
    flooding = False
    await sampler
    growth_mib = (peak - baseline) / 1024
    print_figures(
        capsys,
        "slow client",
        {
            "flood_mib": round(FLOOD * len(BODY) / 2**20, 1),
            "flood_s": round(flood_seconds, 1),
            "limit_mib": SEND_BUFFER / 2**20,
            "rss_baseline_mib": round(baseline / 1024, 1),
            "rss_growth_mib": round(growth_mib, 1),
            "dropped": dropped,
        },
    )
    assert dropped
    assert growth_mib < MAX_GROWTH_MIB

    # The client notices once it reads again: what the kernel still held, then the
    # abort (no close frame: it would have queued behind the unread bytes).
    read = []
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(10):
            async for text in stalled:
                frame = json.loads(text)
                if frame["type"] == "message":
                    read.append(frame["seq"])
    assert stalled.close_code == 1006
    last_seq = max(read, default=1)
    assert read == list(range(2, last_seq + 1))  # in order, from alice's first
    # It resumes from the last seq it read.
    resumed = VisitorClient("visitor-back", [visitors_worker], e2e_site, token)
    resumed.conversation = conversation
    resumed.held[conversation] = set(range(1, last_seq + 1))
    ready = await resumed.start()
    ((stored,),) = e2e_database.query(
        "SELECT COUNT(*) FROM chat_message WHERE conversation_id = %s", (conversation,)
    )
    assert stored == 1 + FLOOD
    # `ready` hands over exactly what the client had not read.
    assert [m["seq"] for m in ready["messages"]] == list(range(last_seq + 1, stored + 1))
    await stop_all([alice, resumed])
