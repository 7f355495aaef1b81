"""The everyday send on the worker's event loop (PostgreSQL only: chat/store/loop.py),
through the real ASGI application: it stores and relays exactly as the ORM path does,
hands everything else to the ORM path, and survives a connection the server dropped.

`make test` runs these in its PostgreSQL pass (tests/on_postgresql.py)."""

import asyncio
import time

import pytest
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper

from chat.conversations import sending
from chat.models import Conversation, Message
from chat.store import loop as loop_db
from tests import ws
from tests.test_consumers_visitor import send, start_chat_with_alice

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the send runs on the event loop only on PostgreSQL (make test's PostgreSQL pass)",
    ),
]


@pytest.fixture
def orm_sends(monkeypatch):
    """The client_msg_ids of the sends that went the ORM path."""
    seen = []
    original = sending.post_message

    def counted(*args, **kwargs):
        seen.append(kwargs["client_msg_id"])
        return original(*args, **kwargs)

    monkeypatch.setattr(sending, "post_message", counted)
    return seen


async def stored_messages(conversation: int) -> list[tuple]:
    return await ws.db(
        lambda: list(
            Message.objects.filter(conversation_id=conversation)
            .order_by("seq")
            .values_list("seq", "sender", "body", "client_msg_id")
        )
    )


async def test_everyday_sends_of_both_sides_skip_the_orm_and_arrive_in_order(
    personas, sockets, orm_sends
):
    visitor, agent, conversation = await start_chat_with_alice(sockets, personas, personas.v1)
    assert orm_sends == ["first"]  # opening a conversation takes the ORM path

    await visitor.send_json_to(send("Order 1234", "v2"))
    assert (await ws.receive_until(visitor, "message.ack"))["seq"] == 2
    relayed = await ws.receive_until(agent, "message")
    assert (relayed["seq"], relayed["sender"], relayed["body"]) == (2, "visitor", "Order 1234")
    await agent.send_json_to(
        {
            "type": "message.send",
            "conversation": conversation,
            "client_msg_id": "a1",
            "body": "On it",
        }
    )
    assert (await ws.receive_until(agent, "message.ack"))["seq"] == 3
    answer = await ws.receive_until(visitor, "message")
    assert (answer["seq"], answer["sender"], answer["body"]) == (3, "agent", "On it")

    assert orm_sends == ["first"]
    assert await stored_messages(conversation) == [
        (1, "visitor", "Hello, my order is late", "first"),
        (2, "visitor", "Order 1234", "v2"),
        (3, "agent", "On it", "a1"),
    ]
    # The counters the everyday statement keeps: alice answered, so read through seq 3.
    row = await ws.db(
        lambda: Conversation.objects.values("last_seq", "agent_read_seq", "agent_unread").get(
            pk=conversation
        )
    )
    assert row == {"last_seq": 3, "agent_read_seq": 3, "agent_unread": 0}


async def test_an_agents_everyday_sends_set_up_no_django_connection_each(
    personas, sockets, monkeypatch
):
    """Each of an agent's sends runs in a task of its own (its conversation's lane), and
    Django's connections are per task in async code: asking one for anything there built
    a new DatabaseWrapper per send, CPU every message paid for (docs/performance.md,
    change 29)."""
    visitor, agent, conversation = await start_chat_with_alice(sockets, personas, personas.v1)
    built = []
    original = BaseDatabaseWrapper.__init__

    def counted(self, *args, **kwargs):
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(BaseDatabaseWrapper, "__init__", counted)

    for n in range(2, 6):
        await agent.send_json_to(
            {
                "type": "message.send",
                "conversation": conversation,
                "client_msg_id": f"a{n}",
                "body": "ok",
            }
        )
        assert (await ws.receive_until(agent, "message.ack"))["seq"] == n
        assert (await ws.receive_until(visitor, "message"))["seq"] == n

    assert built == []


async def test_a_retry_is_answered_with_the_first_seq_and_stored_once(personas, sockets, orm_sends):
    visitor, agent, conversation = await start_chat_with_alice(sockets, personas, personas.v1)
    await visitor.send_json_to(send("Are you there?", "again"))
    first = await ws.receive_until(visitor, "message.ack")
    await ws.receive_until(agent, "message")

    await visitor.send_json_to(send("Are you there?", "again"))
    second = await ws.receive_until(visitor, "message.ack")

    assert second["seq"] == first["seq"] == 2
    assert orm_sends == ["first", "again"]  # the statement found it sent: the ORM answers
    assert [m[3] for m in await stored_messages(conversation)] == ["first", "again"]


async def test_an_agent_cannot_write_into_a_chat_that_is_not_theirs(personas, sockets):
    _visitor, _alice, conversation = await start_chat_with_alice(sockets, personas, personas.v1)
    bob, _ready = await sockets.agent(personas.bob)

    await bob.send_json_to(
        {"type": "message.send", "conversation": conversation, "client_msg_id": "b1", "body": "Hi"}
    )

    error = await ws.receive_until(bob, "error")
    assert (error["code"], error["client_msg_id"]) == ("not_found", "b1")
    assert [m[3] for m in await stored_messages(conversation)] == ["first"]


async def test_a_connection_the_server_dropped_is_replaced_and_no_message_is_lost(
    personas, sockets
):
    visitor, agent, conversation = await start_chat_with_alice(sockets, personas, personas.v1)
    await visitor.send_json_to(send("one", "m2"))
    await ws.receive_until(visitor, "message.ack")
    # Every connection of the loop's is cut by the server (a restart, an admin's kill).
    pids = await ws.db(_loop_backends)
    assert pids
    await ws.db(_terminate, pids)

    for n in range(3, 6):
        await visitor.send_json_to(send(f"message {n}", f"m{n}"))
        assert (await ws.receive_until(visitor, "message.ack"))["seq"] == n
    assert [m[0] for m in await stored_messages(conversation)] == [1, 2, 3, 4, 5]
    received = [(await ws.receive_until(agent, "message"))["seq"] for _ in range(4)]
    assert received == [2, 3, 4, 5]


async def test_a_connection_interrupted_mid_statement_is_never_used_again(personas, sockets):
    # A socket's task cancelled while its statement runs (daphne giving up on a closed
    # socket): what the connection would answer next is that statement's result.
    sleeping = asyncio.ensure_future(loop_db.fetch_one("SELECT pg_sleep(2)", []))
    interrupted = await ws.db(_wait_until, _sleeper)
    sleeping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeping

    (pid,) = await loop_db.fetch_one("SELECT pg_backend_pid()", [])

    assert pid != interrupted
    await ws.db(_wait_until, lambda: _sleeper() is None)  # it ends on its own


def _loop_backends() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND query LIKE 'WITH c AS%%'"
        )
        return [pid for (pid,) in cursor.fetchall()]


def _terminate(pids: list[int]) -> None:
    with connection.cursor() as cursor:
        for pid in pids:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


def _sleeper() -> int | None:
    """The pid of the backend running the test's pg_sleep, if any."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(2)'"
            " AND state = 'active'"
        )
        row = cursor.fetchone()
        return row and row[0]


def _wait_until(condition, timeout: float = 10.0):
    """Poll the database until `condition()` is truthy (it has no event to wait for)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the database")
        time.sleep(0.02)
    return value


async def test_a_tab_that_knows_no_chat_is_open_sends_a_first_message_the_orm_path_only(
    personas, sockets, monkeypatch
):
    tried = []
    real = sending.post_message_on_loop

    async def counted(*args, **kwargs):
        tried.append(kwargs["client_msg_id"])
        return await real(*args, **kwargs)

    monkeypatch.setattr(sending, "post_message_on_loop", counted)
    visitor, _alice, _conversation = await start_chat_with_alice(sockets, personas, personas.v1)
    await visitor.send_json_to(send("Thanks, bye", "second"))
    await ws.receive_until(visitor, "message.ack")
    await visitor.send_json_to({"type": "conversation.close"})
    await ws.receive_until(visitor, "conversation.closed")
    await visitor.send_json_to(send("One more question", "reopen"))
    reopened = await ws.receive_until(visitor, "message.ack")

    assert tried == ["second"]
    assert reopened["seq"] == 1
