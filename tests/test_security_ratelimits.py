"""Attacks on the shared rate limits (chat/ratelimits.py): one visitor flooding from
several tabs, many visitors behind one address, a visitor opening chat after chat, a
script minting visitor tokens, forged X-Forwarded-For headers. Each is refused with
`rate_limited` (or 429) and leaves no row behind.

The per-socket bucket has its own tests in test_consumers_*.py; here it is kept out
of the way so that what refuses is the shared limit. The tests against a real
redis-server (at the end) count the way a deployment does: on the event loop, in one
Redis shared by independent counters."""

import asyncio
import json
import logging
import signal

import pytest
import redis
import redis.asyncio

from chat import ratelimits
from chat.models import Conversation, Message, Visitor, hash_token
from tests import ws
from tests.tasks import started_tasks

pytest_plugins = ["tests.e2e"]

pytestmark = pytest.mark.django_db(transaction=True)

SHOPPER_IP = "203.0.113.7"
NEIGHBOUR_IP = "203.0.113.8"
SESSIONS_URL = "/api/v1/visitor-sessions"


@pytest.fixture(autouse=True)
def only_the_limits_under_test(settings):
    """Every shared limit off unless a test sets it; buckets too big to matter."""
    settings.SUPPORTDESK_VISITOR_RATE = (1000, 1000.0)
    for rule in (
        ratelimits.VISITOR_MESSAGES,
        ratelimits.IP_MESSAGES,
        ratelimits.VISITOR_CONVERSATIONS,
        ratelimits.IP_CONVERSATIONS,
        ratelimits.IP_SESSIONS,
    ):
        setattr(settings, rule.setting, "")


async def tab_of(sockets, personas, visitor, *, ip: str | None = SHOPPER_IP):
    """A visitor socket past hello, connecting from `ip`."""
    communicator = sockets.track(ws.visitor_communicator())
    if ip is not None:
        # What daphne puts in the scope: the peer, or X-Forwarded-For with --proxy-headers.
        communicator.scope["client"] = [ip, 50123]
    connected, _ = await communicator.connect(timeout=ws.TIMEOUT)
    assert connected
    await communicator.send_json_to(ws.hello(personas.acme.key, personas.token(visitor)))
    await ws.receive_until(communicator, "ready")
    return communicator


def send(body: str, client_msg_id: str) -> dict:
    return {"type": "message.send", "client_msg_id": client_msg_id, "body": body}


async def say(tab, body: str, client_msg_id: str) -> dict:
    """Send a message; the ack or error that answers it."""
    await tab.send_json_to(send(body, client_msg_id))
    while True:
        frame = await tab.receive_json_from(timeout=ws.TIMEOUT)
        if frame["type"] in ("message.ack", "error") and frame.get("client_msg_id") == (
            client_msg_id
        ):
            return frame


async def counts() -> tuple[int, int]:
    """(conversations, messages) stored."""
    return await ws.db(lambda: (Conversation.objects.count(), Message.objects.count()))


async def close_chat(tab) -> None:
    await tab.send_json_to({"type": "conversation.close"})
    await ws.receive_until(tab, "conversation.closed")


# --- messages -----------------------------------------------------------------------


async def test_two_tabs_of_one_visitor_share_one_message_limit(personas, sockets, settings):
    settings.SUPPORTDESK_LIMIT_VISITOR_MESSAGES = "3 per minute"
    first_tab = await tab_of(sockets, personas, personas.v1)
    second_tab = await tab_of(sockets, personas, personas.v1)

    answers = [
        await say(first_tab, "one", "m1"),
        await say(second_tab, "two", "m2"),
        await say(first_tab, "three", "m3"),
        await say(second_tab, "four", "m4"),
        await say(first_tab, "five", "m5"),
    ]

    assert [a["type"] for a in answers] == ["message.ack"] * 3 + ["error"] * 2
    assert {a["code"] for a in answers[3:]} == {"rate_limited"}
    assert await counts() == (1, 3)


async def test_visitors_behind_one_address_share_its_message_limit_and_others_do_not(
    personas, sockets, settings
):
    settings.SUPPORTDESK_LIMIT_IP_MESSAGES = "2 per minute"
    v1 = await tab_of(sockets, personas, personas.v1, ip=SHOPPER_IP)
    v2 = await tab_of(sockets, personas, personas.v2, ip=SHOPPER_IP)
    v3 = await tab_of(sockets, personas, personas.v3, ip=NEIGHBOUR_IP)

    assert (await say(v1, "hi from v1", "a"))["type"] == "message.ack"
    assert (await say(v2, "hi from v2", "b"))["type"] == "message.ack"
    refused = await say(v2, "again from v2", "c")
    neighbour = await say(v3, "hi from v3", "d")

    assert refused == {
        "type": "error",
        "code": "rate_limited",
        "detail": refused["detail"],
        "client_msg_id": "c",
    }
    assert neighbour["type"] == "message.ack"
    assert await counts() == (3, 3)


async def test_a_flood_over_the_shared_limit_is_refused_ten_times_then_closed_with_4008(
    personas, sockets, settings, caplog
):
    caplog.set_level(logging.INFO)
    settings.SUPPORTDESK_LIMIT_VISITOR_MESSAGES = "2 per minute"
    tab = await tab_of(sockets, personas, personas.v1)
    assert (await say(tab, "one", "ok-1"))["type"] == "message.ack"
    assert (await say(tab, "two", "ok-2"))["type"] == "message.ack"

    for n in range(15):
        await tab.send_json_to(send(f"flood {n}", f"flood-{n}"))

    code, frames = await ws.receive_close(tab)
    assert code == 4008
    answers = [f for f in frames if f["type"] in ("error", "message.ack")]
    assert [(f["type"], f["code"]) for f in answers] == [("error", "rate_limited")] * 10
    await tab.disconnect()
    assert await counts() == (1, 2)
    assert any("flood over the shared limits" in r.getMessage() for r in caplog.records)


async def test_a_retry_after_the_limit_passes_is_stored_once(personas, sockets, settings):
    settings.SUPPORTDESK_LIMIT_VISITOR_MESSAGES = "1 per minute"
    tab = await tab_of(sockets, personas, personas.v1)
    assert (await say(tab, "first", "m1"))["type"] == "message.ack"
    assert (await say(tab, "second", "m2"))["code"] == "rate_limited"

    # The window is over (here: the limit is lifted); the widget sends m2 again.
    settings.SUPPORTDESK_LIMIT_VISITOR_MESSAGES = ""
    ack = await say(tab, "second", "m2")

    assert ack["type"] == "message.ack"
    assert ack["seq"] == 2
    assert await counts() == (1, 2)


# --- new conversations ----------------------------------------------------------------


async def test_a_visitor_opening_chat_after_chat_is_refused_and_no_conversation_is_stored(
    personas, sockets, settings
):
    settings.SUPPORTDESK_LIMIT_VISITOR_CONVERSATIONS = "2 per minute"
    tab = await tab_of(sockets, personas, personas.v1)
    assert (await say(tab, "first chat", "c1"))["type"] == "message.ack"
    await close_chat(tab)
    assert (await say(tab, "second chat", "c2"))["type"] == "message.ack"
    # Inside an open conversation the limit on opening new ones does not apply.
    assert (await say(tab, "more in the second chat", "c2-more"))["type"] == "message.ack"
    await close_chat(tab)

    refused = await say(tab, "third chat", "c3")

    assert refused["code"] == "rate_limited"
    assert refused["client_msg_id"] == "c3"
    assert await counts() == (2, 3)
    assert (
        await ws.db(
            lambda: list(Conversation.objects.filter(status="queued").values_list("id", flat=True))
        )
        == []
    )


async def test_new_conversations_from_one_address_are_limited_across_visitors(
    personas, sockets, settings
):
    settings.SUPPORTDESK_LIMIT_IP_CONVERSATIONS = "2 per minute"
    v1 = await tab_of(sockets, personas, personas.v1, ip=SHOPPER_IP)
    v2 = await tab_of(sockets, personas, personas.v2, ip=SHOPPER_IP)
    v3 = await tab_of(sockets, personas, personas.v3, ip=SHOPPER_IP)
    assert (await say(v1, "v1 needs help", "a"))["type"] == "message.ack"
    assert (await say(v2, "v2 needs help", "b"))["type"] == "message.ack"

    refused = await say(v3, "v3 needs help", "c")
    v3_elsewhere = await tab_of(sockets, personas, personas.v3, ip=NEIGHBOUR_IP)
    accepted = await say(v3_elsewhere, "v3 needs help", "c")

    assert refused["code"] == "rate_limited"
    assert accepted["type"] == "message.ack"
    assert await counts() == (3, 3)


# --- visitor sessions (HTTP) ----------------------------------------------------------


def post_session(client, payload: dict, *, headers: dict | None = None, **extra):
    return client.post(
        SESSIONS_URL,
        data=json.dumps(payload),
        content_type="application/json",
        headers={"Origin": "https://acme.example", **(headers or {})},
        **extra,
    )


def test_a_script_minting_visitor_tokens_gets_429_and_creates_no_visitor(
    client, personas, settings
):
    settings.SUPPORTDESK_LIMIT_IP_SESSIONS = "3 per minute"
    site = {"site_key": personas.acme.key}
    minted = [post_session(client, site, REMOTE_ADDR=SHOPPER_IP) for _ in range(3)]
    visitors_before = Visitor.objects.count()

    refused = post_session(client, site, REMOTE_ADDR=SHOPPER_IP)

    assert [r.status_code for r in minted] == [201, 201, 201]
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert refused["Retry-After"] == "60"
    assert Visitor.objects.count() == visitors_before


def test_returning_visitors_and_other_addresses_still_get_sessions_when_one_is_over(
    client, personas, settings
):
    settings.SUPPORTDESK_LIMIT_IP_SESSIONS = "1 per minute"
    site = {"site_key": personas.acme.key}
    assert post_session(client, site, REMOTE_ADDR=SHOPPER_IP).status_code == 201
    assert post_session(client, site, REMOTE_ADDR=SHOPPER_IP).status_code == 429

    returning = post_session(
        client, {**site, "visitor_token": personas.token(personas.v1)}, REMOTE_ADDR=SHOPPER_IP
    )
    elsewhere = post_session(client, site, REMOTE_ADDR=NEIGHBOUR_IP)

    assert returning.status_code == 201
    assert returning.json()["visitor_token"] == personas.token(personas.v1)
    assert elsewhere.status_code == 201


def test_a_forged_x_forwarded_for_header_does_not_reset_the_address_limit(
    client, personas, settings
):
    settings.SUPPORTDESK_LIMIT_IP_SESSIONS = "2 per minute"
    site = {"site_key": personas.acme.key}
    statuses = [
        post_session(
            client,
            site,
            REMOTE_ADDR=SHOPPER_IP,
            headers={"X-Forwarded-For": f"198.51.100.{n}"},
        ).status_code
        for n in range(4)
    ]

    assert statuses == [201, 201, 429, 429]


def test_addresses_of_one_ipv6_slash_64_share_a_limit(client, personas, settings):
    settings.SUPPORTDESK_LIMIT_IP_SESSIONS = "2 per minute"
    site = {"site_key": personas.acme.key}
    same_subscriber = ["2001:db8:1:2::1", "2001:db8:1:2::abcd", "2001:db8:1:2:ffff::9"]

    statuses = [post_session(client, site, REMOTE_ADDR=a).status_code for a in same_subscriber]
    other_subscriber = post_session(client, site, REMOTE_ADDR="2001:db8:1:3::1")

    assert statuses == [201, 201, 429]
    assert other_subscriber.status_code == 201


def test_rotating_a_token_counts_as_issuing_one_and_over_the_limit_changes_nothing(
    client, personas, settings
):
    settings.SUPPORTDESK_LIMIT_IP_SESSIONS = "1 per minute"
    token = personas.token(personas.v1)
    first = post_session(client, {"site_key": personas.acme.key}, REMOTE_ADDR=SHOPPER_IP)
    assert first.status_code == 201

    refused = post_session(
        client,
        {"site_key": personas.acme.key, "visitor_token": token, "rotate": True},
        REMOTE_ADDR=SHOPPER_IP,
    )

    assert refused.status_code == 429
    personas.v1.refresh_from_db()
    assert personas.v1.token_hash == hash_token(token)


# --- when Redis is away -----------------------------------------------------------------


async def test_messages_still_go_through_when_the_limit_store_is_unreachable(
    personas, sockets, settings, caplog
):
    caplog.set_level(logging.WARNING, logger="chat.ratelimits")
    # Nothing listens on port 1: every count fails at once.
    settings.SUPPORTDESK_RATE_LIMIT_STORAGE = "redis://127.0.0.1:1/0"
    settings.SUPPORTDESK_LIMIT_VISITOR_MESSAGES = "1 per minute"
    tab = await tab_of(sockets, personas, personas.v1)

    answers = [await say(tab, f"message {n}", f"m{n}") for n in range(3)]

    assert [a["type"] for a in answers] == ["message.ack"] * 3
    assert await counts() == (1, 3)
    assert any("storage unavailable" in r.getMessage() for r in caplog.records)


# --- counted in a real Redis, on the event loop ----------------------------------------


@pytest.fixture
def shared_redis(redis_server, settings):
    """The limits counted in a private redis-server, as every worker of a deployment does."""
    settings.SUPPORTDESK_RATE_LIMIT_STORAGE = redis_server.url
    yield redis_server
    if redis_server.process.poll() is None:
        # A test may have paused it (SIGSTOP); stopping needs it running.
        redis_server.process.send_signal(signal.SIGCONT)


def counted_in(redis_server, rule: ratelimits.Rule, identity: str | int) -> int:
    """Events Redis holds in the moving windows of `rule` for `identity`."""
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    pattern = f"LIMITS:LIMITER/{ratelimits.NAMESPACE}/{rule.name}/{identity}/*"
    try:
        return sum(client.llen(key) for key in client.keys(pattern))
    finally:
        client.close()


def another_worker_counts_a_message(visitor_id: int, client: str) -> bool:
    """A message counted by a counter of its own (its own event loop, Redis client and
    connections), as another worker would; False if refused."""

    async def count() -> None:
        await ratelimits.VisitorLimits(visitor_id=visitor_id, client=client).message()

    try:
        asyncio.run(count())
    except ratelimits.RateLimited:
        return False
    return True


async def test_two_workers_counting_in_one_redis_refuse_the_visitor_past_its_limit(
    personas, sockets, settings, shared_redis
):
    settings.SUPPORTDESK_LIMIT_VISITOR_MESSAGES = "3 per minute"
    tab = await tab_of(sockets, personas, personas.v1)

    def other_worker() -> bool:
        return another_worker_counts_a_message(personas.v1.id, SHOPPER_IP)

    here_first = await say(tab, "one", "m1")
    there_first = await asyncio.to_thread(other_worker)
    here_second = await say(tab, "two", "m2")
    here_refused = await say(tab, "three", "m3")
    there_refused = await asyncio.to_thread(other_worker)

    assert (here_first["type"], there_first, here_second["type"]) == (
        "message.ack",
        True,
        "message.ack",
    )
    assert here_refused["code"] == "rate_limited"
    assert there_refused is False
    assert await counts() == (1, 2)
    assert counted_in(shared_redis, ratelimits.VISITOR_MESSAGES, personas.v1.id) == 3


async def test_two_workers_counting_in_one_redis_share_an_address_limit(
    personas, sockets, settings, shared_redis
):
    settings.SUPPORTDESK_LIMIT_IP_MESSAGES = "2 per minute"
    settings.SUPPORTDESK_LIMIT_VISITOR_MESSAGES = "10 per minute"
    v1 = await tab_of(sockets, personas, personas.v1, ip=SHOPPER_IP)
    assert (await say(v1, "hi from v1", "a"))["type"] == "message.ack"
    assert await asyncio.to_thread(another_worker_counts_a_message, personas.v2.id, SHOPPER_IP)

    refused = await say(v1, "again from v1", "b")

    assert refused["code"] == "rate_limited"
    # Refused by the address rule, counted first: the visitor rule was not asked, so the
    # refused message spent nothing of v1's own limit.
    assert counted_in(shared_redis, ratelimits.IP_MESSAGES, SHOPPER_IP) == 2
    assert counted_in(shared_redis, ratelimits.VISITOR_MESSAGES, personas.v1.id) == 1


async def test_a_message_counts_both_its_limits_in_one_round_trip_that_the_sync_count_shares(
    settings, shared_redis
):
    settings.SUPPORTDESK_LIMIT_IP_MESSAGES = "3 per minute"
    settings.SUPPORTDESK_LIMIT_VISITOR_MESSAGES = "2 per minute"
    limits = ratelimits.VisitorLimits(visitor_id=7, client="192.0.2.70")
    await limits.message()
    counter = ratelimits._LoopCounter.of_running_loop(shared_redis.url)
    trips = []
    acquire = counter.acquire_in_order

    async def counted_trip(*args):
        trips.append(args)
        return await acquire(*args)

    counter.acquire_in_order = counted_trip
    await limits.message()
    assert len(trips) == 1  # the address and the visitor, one script
    # The sync `count` (HTTP views, ORM threads) reads and adds to the same windows.
    with pytest.raises(ratelimits.RateLimited) as refused:
        await asyncio.to_thread(
            ratelimits.count,
            (ratelimits.IP_MESSAGES, "192.0.2.70"),
            (ratelimits.VISITOR_MESSAGES, "7"),
        )
    assert refused.value.rule == ratelimits.VISITOR_MESSAGES
    assert counted_in(shared_redis, ratelimits.IP_MESSAGES, "192.0.2.70") == 3
    assert counted_in(shared_redis, ratelimits.VISITOR_MESSAGES, 7) == 2


async def test_counts_on_the_loop_reuse_their_connections_without_the_pools_lending(
    settings, shared_redis, monkeypatch
):
    """redis-py's pool lent a connection per count (a lock, a condition, a timeout, a
    readiness check and its metrics): half of what a count cost the worker."""
    settings.SUPPORTDESK_LIMIT_VISITOR_MESSAGES = "5 per minute"
    limits = ratelimits.VisitorLimits(visitor_id=8, client="192.0.2.80")
    await limits.message()
    lent = []
    pool_class = redis.asyncio.BlockingConnectionPool  # the counts' pool for redis://
    lend = pool_class.get_connection

    async def counted_lending(pool, *args, **kwargs):
        lent.append(pool)
        return await lend(pool, *args, **kwargs)

    monkeypatch.setattr(pool_class, "get_connection", counted_lending)
    for _ in range(4):
        await limits.message()
    with pytest.raises(ratelimits.RateLimited):
        await limits.message()  # the sixth in a minute

    assert lent == []
    assert counted_in(shared_redis, ratelimits.VISITOR_MESSAGES, 8) == 5


async def test_a_count_on_the_loop_starts_no_task(settings, shared_redis):
    """redis-py bounds each write by its socket timeout with `asyncio.wait_for`, a task
    per command: the count's own REDIS_TIMEOUT bounds it instead."""
    settings.SUPPORTDESK_LIMIT_VISITOR_MESSAGES = "5 per minute"
    limits = ratelimits.VisitorLimits(visitor_id=9, client="192.0.2.90")
    await limits.message()
    with started_tasks() as started:
        for _ in range(3):
            await limits.message()

    assert started == []
    assert counted_in(shared_redis, ratelimits.VISITOR_MESSAGES, 9) == 4


async def test_a_message_is_counted_in_redis_on_the_event_loop_without_a_thread(
    personas, sockets, settings, shared_redis, caplog
):
    caplog.set_level(logging.WARNING, logger="chat.ratelimits")
    settings.SUPPORTDESK_LIMIT_VISITOR_MESSAGES = "2 per minute"
    tab = await tab_of(sockets, personas, personas.v1)
    # `asyncio.to_thread` (and any other use of the loop's default executor) fails from
    # here on; the sockets' ORM calls have executors of their own.
    await asyncio.get_running_loop().shutdown_default_executor()

    answers = [await say(tab, f"message {n}", f"m{n}") for n in range(3)]

    assert [a["type"] for a in answers] == ["message.ack", "message.ack", "error"]
    assert answers[2]["code"] == "rate_limited"
    assert counted_in(shared_redis, ratelimits.VISITOR_MESSAGES, personas.v1.id) == 2
    assert not any("storage unavailable" in r.getMessage() for r in caplog.records)


async def test_messages_go_through_at_once_when_redis_is_stopped(
    personas, sockets, settings, shared_redis, caplog
):
    caplog.set_level(logging.WARNING, logger="chat.ratelimits")
    settings.SUPPORTDESK_LIMIT_VISITOR_MESSAGES = "1 per minute"
    tab = await tab_of(sockets, personas, personas.v1)
    assert (await say(tab, "counted", "m1"))["type"] == "message.ack"
    shared_redis.process.terminate()
    shared_redis.process.wait()

    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await say(tab, "over the limit, but nobody counts", "m2")
    took = loop.time() - started

    assert answer["type"] == "message.ack"
    assert took < ratelimits.REDIS_TIMEOUT + 1.0
    assert await counts() == (1, 2)
    assert any("storage unavailable" in r.getMessage() for r in caplog.records)


async def test_a_redis_that_stops_answering_holds_one_message_up_to_the_timeout_then_none(
    personas, sockets, settings, shared_redis, caplog
):
    caplog.set_level(logging.WARNING, logger="chat.ratelimits")
    settings.SUPPORTDESK_LIMIT_VISITOR_MESSAGES = "2 per minute"
    tab = await tab_of(sockets, personas, personas.v1)
    assert (await say(tab, "counted", "m1"))["type"] == "message.ack"
    # Paused, Redis still accepts connections and takes commands, but answers nothing
    # (a hung server, a partition): each count would wait for its timeout.
    shared_redis.process.send_signal(signal.SIGSTOP)

    loop = asyncio.get_running_loop()
    started = loop.time()
    waited = await say(tab, "waits for the timeout", "m2")
    took = loop.time() - started
    shared_redis.process.send_signal(signal.SIGCONT)
    # Redis now runs m2's count it had been sent (2 of 2 counted): were m3 counted, it
    # would be refused. It goes through uncounted: the loop rests from Redis for
    # STORAGE_RETRY_AFTER instead of making every message wait for it.
    resting = await say(tab, "not counted while the loop rests", "m3")

    assert waited["type"] == "message.ack"
    assert ratelimits.REDIS_TIMEOUT * 0.9 <= took < ratelimits.REDIS_TIMEOUT + 1.0
    assert resting["type"] == "message.ack"
    assert counted_in(shared_redis, ratelimits.VISITOR_MESSAGES, personas.v1.id) == 2
    assert await counts() == (1, 3)
    warnings = [r.getMessage() for r in caplog.records if "storage unavailable" in r.getMessage()]
    assert len(warnings) == 1


def test_identities_are_client_addresses_with_ipv6_grouped_by_slash_64():
    assert ratelimits.client_address("203.0.113.7") == "203.0.113.7"
    assert ratelimits.client_address("::ffff:203.0.113.7") == "203.0.113.7"
    assert ratelimits.client_address("2001:db8::1") == "2001:db8::/64"
    assert ratelimits.client_address(None) is None
    assert ratelimits.scope_client({"client": ["2001:db8::5", 443]}) == "2001:db8::/64"
    assert ratelimits.scope_client({}) is None
