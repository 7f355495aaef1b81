"""Calls across two real daphne workers sharing one Redis and one database: the agent on
one worker, the visitor on the other. Signals cross between them to the call tabs only,
a third party on either worker is refused, a call tab closing on one worker ends the
call on the other, and an invitation whose worker was killed still times out. While a
call rings, the visitor's tabs are counted across both workers: it keeps ringing while
one is open anywhere (a reload's next page on the other worker included), ends
("disconnected") when the last one closes or its worker is killed, and a tab opened on
either worker is shown the invitation."""

import asyncio

import pytest

from devstack import (
    Database,
    Peer,
    Server,
    Site,
    connect_agent,
    connect_visitor,
    create_agent,
    login,
    set_presence,
    visitor_session,
    wait_until,
)

pytest_plugins = ["tests.e2e"]
pytestmark = pytest.mark.e2e

OFFER = {"type": "offer", "sdp": "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\n"}
ANSWER = {"type": "answer", "sdp": "v=0\r\no=- 99 2 IN IP4 127.0.0.1\r\ns=-\r\n"}


async def agent_on(env: dict, worker: Server, name: str) -> Peer:
    password = await asyncio.to_thread(create_agent, env, name, capacity=2)
    cookie = await login(worker, name, password)
    agent, _ready = await connect_agent(worker, cookie, name)
    await set_presence(agent)
    return agent


async def visitor_chatting(worker: Server, site: Site, name: str) -> tuple[Peer, str, int]:
    """A visitor on `worker` whose first message opened a chat (the available agent
    gets it); the peer, its token and the conversation id."""
    token = await visitor_session(worker, site)
    visitor, _ready = await connect_visitor(worker, site, token, name)
    await visitor.send({"type": "message.send", "client_msg_id": "hi", "body": "Hello"})
    ack = await visitor.recv_until("message.ack")
    await visitor.recv_until("conversation.assigned")
    return visitor, token, ack["conversation"]


async def ring(agent: Peer, visitor: Peer, conversation: int, media: str = "video") -> int:
    await agent.send({"type": "call.invite", "conversation": conversation, "media": media})
    invited = await visitor.recv_until("call.invited")
    await agent.recv_until("call.invited", call_id=invited["call_id"])
    return invited["call_id"]


def call_state(database: Database, call_id: int) -> tuple[str, str]:
    ((status, reason),) = database.query(
        "SELECT status, end_reason FROM chat_call WHERE id = %s", (call_id,)
    )
    return status, reason


async def test_a_call_connects_across_two_workers_and_strangers_are_refused(
    daphne_workers: list[Server], e2e_env: dict, e2e_site: Site, e2e_database: Database
):
    w0, w1 = daphne_workers
    alice = await agent_on(e2e_env, w0, "alice")
    visitor, token, conversation = await visitor_chatting(w1, e2e_site, "v1")
    other_tab, _ready = await connect_visitor(w0, e2e_site, token, "v1-tab2")
    call_id = await ring(alice, visitor, conversation)

    await visitor.send({"type": "call.accept", "call_id": call_id})
    await alice.recv_until("call.accepted", call_id=call_id)
    await other_tab.recv_until("call.accepted", call_id=call_id)
    await alice.send({"type": "call.signal", "call_id": call_id, "data": OFFER})
    await visitor.send({"type": "call.signal", "call_id": call_id, "data": ANSWER})

    assert (await visitor.recv_until("call.signal"))["data"] == OFFER
    assert (await alice.recv_until("call.signal"))["data"] == ANSWER
    assert call_state(e2e_database, call_id) == ("active", "")

    # Someone else, on either worker: an agent without the chat, another visitor.
    bob = await agent_on(e2e_env, w1, "bob")
    stranger, _token, _conversation = await visitor_chatting(w0, e2e_site, "v2")
    for peer in (bob, stranger):
        mark = peer.mark()
        await peer.send({"type": "call.signal", "call_id": call_id, "data": OFFER})
        await peer.send({"type": "call.end", "call_id": call_id})
        for _ in range(2):
            error = await peer.recv_until("error", since=mark)
            assert error["code"] == "not_found", error
    await alice.round_trip()
    await visitor.round_trip()
    await other_tab.round_trip()
    assert len(visitor.of_type("call.signal")) == 1 and len(alice.of_type("call.signal")) == 1
    assert other_tab.of_type("call.signal") == []  # the visitor's tab that did not answer

    await alice.send({"type": "call.end", "call_id": call_id})
    for peer in (visitor, other_tab, alice):
        ended = await peer.recv_until("call.ended", call_id=call_id)
        assert ended["reason"] == "hangup"
    assert call_state(e2e_database, call_id) == ("ended", "hangup")


async def test_a_call_tab_closing_on_one_worker_ends_the_call_on_the_other(
    daphne_workers: list[Server], e2e_env: dict, e2e_site: Site, e2e_database: Database
):
    w0, w1 = daphne_workers
    alice = await agent_on(e2e_env, w0, "alice")
    visitor, _token, conversation = await visitor_chatting(w1, e2e_site, "v1")
    call_id = await ring(alice, visitor, conversation, media="audio")
    await visitor.send({"type": "call.accept", "call_id": call_id})
    await alice.recv_until("call.accepted", call_id=call_id)

    await visitor.ws.close()

    ended = await alice.recv_until("call.ended", call_id=call_id)
    assert ended["reason"] == "disconnected"
    assert call_state(e2e_database, call_id) == ("ended", "disconnected")


@pytest.mark.parametrize("e2e_overrides", [{"SUPPORTDESK_CALL_RING_TIMEOUT": "2"}], ids=["2s"])
async def test_an_invitation_whose_worker_was_killed_still_times_out(
    daphne_workers: list[Server], e2e_env: dict, e2e_site: Site, e2e_database: Database
):
    w0, w1 = daphne_workers
    alice = await agent_on(e2e_env, w0, "alice")
    visitor, _token, conversation = await visitor_chatting(w1, e2e_site, "v1")
    call_id = await ring(alice, visitor, conversation)

    # kill -9: no disconnect runs and the timer dies with the worker; w1's sweep ends it.
    w0.kill()

    ended = await visitor.recv_until("call.ended", call_id=call_id, timeout=10)
    assert ended["reason"] == "timeout"
    assert call_state(e2e_database, call_id) == ("ended", "timeout")


def visitor_sockets(database: Database) -> int:
    ((count,),) = database.query("SELECT count(*) FROM chat_visitorsocket")
    return count


async def sockets_counted(database: Database, expected: int) -> None:
    """Wait until the workers count `expected` visitor sockets (a close runs after the
    client's side of it returns, so there is no frame to wait for)."""
    await asyncio.to_thread(
        wait_until,
        lambda: visitor_sockets(database) == expected,
        timeout=10,
        what=lambda: f"{expected} visitor sockets counted (now {visitor_sockets(database)})",
    )


async def test_a_ringing_call_ends_when_the_visitors_last_tab_on_either_worker_closes(
    daphne_workers: list[Server], e2e_env: dict, e2e_site: Site, e2e_database: Database
):
    w0, w1 = daphne_workers
    alice = await agent_on(e2e_env, w0, "alice")
    visitor, token, conversation = await visitor_chatting(w1, e2e_site, "v1")
    other_tab, _ready = await connect_visitor(w0, e2e_site, token, "v1-tab2")
    call_id = await ring(alice, visitor, conversation)
    await other_tab.recv_until("call.invited", call_id=call_id)

    # One tab closes on w1: the tab on w0 still counts, so the call rings on.
    await visitor.close()
    await sockets_counted(e2e_database, 1)
    await alice.round_trip()
    assert alice.of_type("call.ended") == []
    assert call_state(e2e_database, call_id) == ("ringing", "")

    # The last one closes on w0: the call ends for the agent once the closed socket's
    # grace (3 s) is over, not at the timeout.
    await other_tab.close()
    ended = await alice.recv_until("call.ended", call_id=call_id, timeout=10)
    assert ended["reason"] == "disconnected"
    assert call_state(e2e_database, call_id) == ("ended", "disconnected")


async def test_a_tab_opened_on_either_worker_while_a_call_rings_is_shown_it_and_no_stranger_is(
    daphne_workers: list[Server], e2e_env: dict, e2e_site: Site, e2e_database: Database
):
    w0, w1 = daphne_workers
    alice = await agent_on(e2e_env, w0, "alice")
    visitor, token, conversation = await visitor_chatting(w1, e2e_site, "v1")
    call_id = await ring(alice, visitor, conversation, media="audio")
    invited = visitor.of_type("call.invited")[0]

    for worker in (w0, w1):  # a reload: the new page's socket, on either worker
        reloaded, ready = await connect_visitor(worker, e2e_site, token, f"v1@{worker.name}")
        shown = await reloaded.recv_until("call.invited", call_id=call_id)
        assert shown == invited
        assert reloaded.frames.index(shown) == reloaded.frames.index(ready) + 1
    stranger, _token, _conversation = await visitor_chatting(w0, e2e_site, "v2")
    await stranger.round_trip()
    assert [f for f in stranger.frames if f["type"].startswith("call.")] == []

    # The reloaded page answers it, on its worker.
    await reloaded.send({"type": "call.accept", "call_id": call_id})
    await alice.recv_until("call.accepted", call_id=call_id)
    assert call_state(e2e_database, call_id) == ("active", "")


@pytest.mark.parametrize(
    "e2e_overrides",
    [{"SUPPORTDESK_VISITOR_SOCKET_TTL": "2", "SUPPORTDESK_VISITOR_SOCKET_HEARTBEAT": "0.5"}],
    ids=["ttl2s"],
)
async def test_a_ringing_call_ends_when_the_visitors_only_worker_is_killed(
    daphne_workers: list[Server], e2e_env: dict, e2e_site: Site, e2e_database: Database
):
    w0, w1 = daphne_workers
    alice = await agent_on(e2e_env, w1, "alice")
    visitor, _token, conversation = await visitor_chatting(w0, e2e_site, "v1")
    call_id = await ring(alice, visitor, conversation)

    # The heartbeat keeps the socket counted past its TTL while its worker lives.
    def w0_seen_at():
        ((seen_at,),) = e2e_database.query(
            "SELECT w.seen_at FROM chat_socketworker w "
            "JOIN chat_visitorsocket s ON s.worker_id = w.name"
        )
        return seen_at

    first_seen = w0_seen_at()
    await asyncio.to_thread(
        wait_until,
        lambda: w0_seen_at() > first_seen,
        timeout=5,
        what="w0's heartbeat refreshing its visitor socket",
    )

    # kill -9: no close runs; the row stops being refreshed and w1's sweep ends the call
    # once the TTL has passed, long before the 30 s timeout.
    w0.kill()

    ended = await alice.recv_until("call.ended", call_id=call_id, timeout=10)
    assert ended["reason"] == "disconnected"
    assert call_state(e2e_database, call_id) == ("ended", "disconnected")
    await sockets_counted(e2e_database, 0)


async def test_a_reload_onto_the_other_worker_while_a_call_rings_shows_it_and_it_rings_on(
    daphne_workers: list[Server], e2e_env: dict, e2e_site: Site, e2e_database: Database
):
    w0, w1 = daphne_workers
    alice = await agent_on(e2e_env, w0, "alice")
    visitor, token, conversation = await visitor_chatting(w1, e2e_site, "v1")
    call_id = await ring(alice, visitor, conversation, media="audio")

    # The only tab reloads: its socket on w1 closes, the new page's opens on w0 within
    # the closed socket's grace.
    await visitor.close()
    reloaded, _ready = await connect_visitor(w0, e2e_site, token, "v1-reloaded")
    await reloaded.recv_until("call.invited", call_id=call_id)
    await sockets_counted(e2e_database, 1)  # w1 forgot the old socket: the grace is over
    await alice.round_trip()
    assert alice.of_type("call.ended") == []
    assert call_state(e2e_database, call_id) == ("ringing", "")

    await reloaded.send({"type": "call.accept", "call_id": call_id})
    await alice.recv_until("call.accepted", call_id=call_id)
    assert call_state(e2e_database, call_id) == ("active", "")
