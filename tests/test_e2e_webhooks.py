"""Webhooks from real workers to a real HTTP receiver: signatures a receiver verifies with
the `standardwebhooks` library, first attempts in commit order per conversation across two
workers, a failed first attempt sent again within 10 s under the same `webhook-id`, and a
worker killed with deliveries pending losing none of them."""

import asyncio
import itertools
from collections import defaultdict

import pytest
from standardwebhooks.webhooks import Webhook

from devstack import (
    Peer,
    Server,
    Site,
    connect_agent,
    connect_visitor,
    create_agent,
    login,
    manage,
    set_presence,
    visitor_session,
)
from devstack.receiver import Received, WebhookReceiver
from integrations import delivery

pytest_plugins = ["tests.e2e"]
pytestmark = pytest.mark.e2e

DELIVERY_TIMEOUT = 30.0  # seconds; a retry is due 5 s after a failure
_ids = itertools.count(1)


@pytest.fixture
def e2e_overrides() -> dict[str, str]:
    # Each worker looks for due deliveries five times a second (default: once).
    return {"SUPPORTDESK_WEBHOOK_INTERVAL": "0.2"}


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.stop()


def add_webhook(env: dict, site: Site, url: str) -> Webhook:
    """`add_webhook` for message.created; the receiver's verifier from its secret."""
    out = manage(env, "add_webhook", "--site", site.key, "--url", url, "--event", "message.created")
    return Webhook(out.strip().splitlines()[-1])


async def agent_on(env: dict, worker: Server, capacity: int) -> Peer:
    password = await asyncio.to_thread(create_agent, env, "alice", capacity=capacity)
    agent, _ready = await connect_agent(worker, await login(worker, "alice", password), "alice")
    await set_presence(agent)
    return agent


async def say(visitor: Peer, body: str) -> dict:
    """A visitor's message, sent and acknowledged: its ack (conversation, seq)."""
    msg_id = f"m-{next(_ids)}"
    await visitor.send({"type": "message.send", "client_msg_id": msg_id, "body": body})
    return await visitor.recv_until("message.ack", client_msg_id=msg_id)


def first_attempts(received: list[Received]) -> list[Received]:
    """Each webhook-id's first arrival, in arrival order."""
    seen: set[str] = set()
    firsts = []
    for request in received:
        if request.webhook_id not in seen:
            seen.add(request.webhook_id)
            firsts.append(request)
    return firsts


def seqs_by_conversation(requests: list[Received]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = defaultdict(list)
    for request in requests:
        data = request.event["data"]
        found[data["conversation"]].append(data["seq"])
    return dict(found)


async def test_first_attempts_keep_each_conversations_order_across_two_workers(
    daphne_workers, e2e_env, e2e_site, receiver
):
    verifier = add_webhook(e2e_env, e2e_site, receiver.url)
    agent = await agent_on(e2e_env, daphne_workers[0], capacity=4)
    visitors = []
    for n in range(4):
        token = await visitor_session(daphne_workers[n % 2], e2e_site)
        peer, _ready = await connect_visitor(daphne_workers[n % 2], e2e_site, token, f"v{n}")
        visitors.append(peer)

    # Four chats side by side, each visitor on its worker, ten messages each.
    acks = await asyncio.gather(
        *(
            asyncio.gather(*[say(visitor, f"{n}: message {i}") for i in range(10)])
            for n, visitor in enumerate(visitors)
        )
    )
    expected = {
        ack_list[0]["conversation"]: sorted(a["seq"] for a in ack_list) for ack_list in acks
    }

    def all_arrived(received: list[Received]) -> bool:
        got = seqs_by_conversation(first_attempts(received))
        return {c: sorted(s) for c, s in got.items()} == expected

    await asyncio.to_thread(receiver.wait_for, all_arrived, DELIVERY_TIMEOUT)
    firsts = first_attempts(receiver.received)
    assert seqs_by_conversation(firsts) == expected  # in seq order, per conversation
    for request in firsts:
        event = verifier.verify(request.body, request.headers)
        assert event["type"] == "message.created"
    assert len(receiver.received) == len(firsts) == 40  # each once: every answer was 204
    await agent.close()


async def test_a_failed_first_attempt_comes_again_within_10_s_with_the_same_id(
    daphne_workers, e2e_env, e2e_site, receiver
):
    receiver.answer = lambda request, earlier: (
        503 if all(r.webhook_id != request.webhook_id for r in earlier) else 204
    )
    verifier = add_webhook(e2e_env, e2e_site, receiver.url)
    token = await visitor_session(daphne_workers[0], e2e_site)
    visitor, _ready = await connect_visitor(daphne_workers[0], e2e_site, token, "v")

    await say(visitor, "Is anyone there?")

    await asyncio.to_thread(
        receiver.wait_for, lambda received: len(received) >= 2, DELIVERY_TIMEOUT
    )
    first, again = receiver.received[:2]
    assert (first.status, again.status) == (503, 204)
    assert again.webhook_id == first.webhook_id and again.body == first.body
    assert again.at - first.at <= 10.0
    assert verifier.verify(again.body, again.headers)["data"]["body"] == "Is anyone there?"


async def test_a_worker_killed_with_deliveries_pending_loses_none(
    daphne_workers, e2e_env, e2e_site, receiver
):
    up = False
    receiver.answer = lambda request, earlier: 204 if up else 503
    add_webhook(e2e_env, e2e_site, receiver.url)
    worker_a, worker_b = daphne_workers
    visitors = []
    for n, worker in enumerate((worker_a, worker_b, worker_a)):
        token = await visitor_session(worker, e2e_site)
        visitors.append((await connect_visitor(worker, e2e_site, token, f"v{n}"))[0])
    acks = [await say(visitor, f"message {i}") for i in range(4) for visitor in visitors]
    sent = {(a["conversation"], a["seq"]) for a in acks}

    # Every message had its first attempt, refused: all of them wait for a retry.
    await asyncio.to_thread(
        receiver.wait_for, lambda received: len(first_attempts(received)) == len(sent), 20
    )
    worker_a.kill()  # SIGKILL: whatever it held in memory is gone
    up = True

    def all_delivered(received: list[Received]) -> bool:
        return {
            (r.event["data"]["conversation"], r.event["data"]["seq"])
            for r in received
            if r.status == 204
        } == sent

    # Those it had claimed for their first attempt go again once its claim lapses.
    await asyncio.to_thread(
        receiver.wait_for, all_delivered, delivery.LEASE.total_seconds() + DELIVERY_TIMEOUT
    )
    assert worker_b.alive and not worker_a.alive
