"""The visitor socket's wire contract, through the real ASGI application: hello and
ready, sending, relays, resume by seq, and every refusal of bad input."""

import asyncio
import json
import logging

import pytest

from chat.conversations import closing, sending, sessions
from chat.conversations.actors import Actor
from chat.models import Conversation, Message, Site
from chat.realtime import resume
from chat.transport import consumers
from chat.transport import hello as hello_reads
from tests import ws

pytestmark = pytest.mark.django_db(transaction=True)


async def visitor_socket(sockets, personas, visitor, *, last_seq=None, **headers):
    return await sockets.visitor(
        personas.acme.key, personas.token(visitor), last_seq=last_seq, **headers
    )


async def stored() -> tuple[int, int]:
    """(conversations, messages) in the database."""
    return await ws.db(lambda: (Conversation.objects.count(), Message.objects.count()))


async def conversation_of(visitor) -> Conversation:
    return await ws.db(Conversation.objects.get, visitor_id=visitor.id)


def send(body: str, client_msg_id: str) -> dict:
    return {"type": "message.send", "client_msg_id": client_msg_id, "body": body}


async def start_chat_with_alice(sockets, personas, visitor):
    """`visitor` writes first and alice (whose dashboard is open) is assigned.
    Returns (visitor socket, alice socket, conversation id)."""
    agent, _ready = await sockets.agent(personas.alice)
    visitor_tab, _ready = await visitor_socket(sockets, personas, visitor)
    await visitor_tab.send_json_to(send("Hello, my order is late", "first"))
    ack = await ws.receive_until(visitor_tab, "message.ack")
    assigned = await ws.receive_until(agent, "conversation.assigned")
    assert assigned["conversation"]["id"] == ack["conversation"]
    await ws.receive_until(visitor_tab, "conversation.assigned")
    return visitor_tab, agent, ack["conversation"]


# --- hello and ready ----------------------------------------------------------------


async def test_first_hello_is_answered_by_ready_without_a_conversation(personas, sockets):
    _tab, ready = await visitor_socket(sockets, personas, personas.v1)

    assert ready["conversation"] is None
    assert ready["messages"] == []


async def test_hello_after_a_chat_returns_the_conversation_and_the_messages_after_last_seq(
    personas, sockets
):
    posted = await ws.run_service(
        sending.post_message, Actor.visitor(personas.v1.id), client_msg_id="a", body="one"
    )
    conversation_id = posted.message["conversation"]
    for n, body in enumerate(["two", "three"]):
        await ws.run_service(
            sending.post_message,
            Actor.agent(personas.alice.id),
            conversation_id=conversation_id,
            client_msg_id=f"reply-{n}",
            body=body,
        )

    _tab, ready = await visitor_socket(sockets, personas, personas.v1, last_seq=1)

    assert ready["conversation"]["id"] == conversation_id
    assert ready["conversation"]["status"] == "active"
    assert ready["conversation"]["queue_position"] is None
    assert ready["conversation"]["agent"] == {"display_name": "Alice"}
    assert [(m["seq"], m["sender"], m["body"]) for m in ready["messages"]] == [
        (2, "agent", "two"),
        (3, "agent", "three"),
    ]
    assert set(ready["messages"][0]) >= {
        "conversation",
        "seq",
        "sender",
        "body",
        "client_msg_id",
        "sent_at",
    }


async def test_last_seq_refers_to_the_conversation_closed_while_the_visitor_was_away(
    personas, sockets
):
    posted = await ws.run_service(
        sending.post_message, Actor.visitor(personas.v1.id), client_msg_id="a", body="hi"
    )
    conversation_id = posted.message["conversation"]
    await ws.run_service(
        sending.post_message,
        Actor.agent(personas.alice.id),
        conversation_id=conversation_id,
        client_msg_id="bye",
        body="Solved, closing",
    )
    await ws.run_service(
        closing.close_conversation, Actor.agent(personas.alice.id), conversation_id=conversation_id
    )

    _tab, ready = await visitor_socket(sockets, personas, personas.v1, last_seq=1)

    assert ready["conversation"]["id"] == conversation_id
    assert ready["conversation"]["status"] == "closed"
    assert [m["body"] for m in ready["messages"]] == ["Solved, closing"]


# --- sending ------------------------------------------------------------------------


async def test_sent_message_is_acked_to_its_socket_and_delivered_once_to_the_other_tab_and_agent(
    personas, sockets
):
    tab, agent, conversation_id = await start_chat_with_alice(sockets, personas, personas.v1)
    other_tab, _ready = await visitor_socket(sockets, personas, personas.v1)

    await tab.send_json_to(send("Order #1234", "second"))

    ack = await ws.receive_until(tab, "message.ack")
    assert ack == {
        "type": "message.ack",
        "client_msg_id": "second",
        "conversation": conversation_id,
        "seq": 2,
    }
    for socket in (other_tab, agent):
        message = await ws.receive_until(socket, "message")
        assert message["conversation"] == conversation_id
        assert message["seq"] == 2
        assert message["sender"] == "visitor"
        assert message["body"] == "Order #1234"
        assert message["client_msg_id"] == "second"
        assert message["sent_at"]
        assert [f for f in await ws.frames_before_pong(socket) if f["type"] == "message"] == []
    assert [f for f in await ws.frames_before_pong(tab) if f["type"] == "message"] == []


async def test_first_message_opens_a_conversation_and_the_other_tab_sees_it(personas, sockets):
    tab, _ready = await visitor_socket(sockets, personas, personas.v1)
    other_tab, _ready = await visitor_socket(sockets, personas, personas.v1)

    await tab.send_json_to(send("Anyone there?", "first"))

    ack = await ws.receive_until(tab, "message.ack")
    message = await ws.receive_until(other_tab, "message")
    assert (message["conversation"], message["seq"]) == (ack["conversation"], 1)
    assert await stored() == (1, 1)


async def test_retried_send_with_the_same_client_msg_id_stores_one_message_and_acks_it_again(
    personas, sockets
):
    tab, agent, _conversation_id = await start_chat_with_alice(sockets, personas, personas.v1)

    await tab.send_json_to(send("Is it shipped?", "retry-me"))
    first_ack = await ws.receive_until(tab, "message.ack")
    await ws.receive_until(agent, "message")
    await tab.send_json_to(send("Is it shipped?", "retry-me"))
    second_ack = await ws.receive_until(tab, "message.ack")

    assert second_ack == first_ack
    assert await ws.db(Message.objects.filter(client_msg_id="retry-me").count) == 1
    assert [f for f in await ws.frames_before_pong(agent) if f["type"] == "message"] == []


async def test_a_body_of_exactly_ten_thousand_characters_is_accepted(personas, sockets):
    tab, _ready = await visitor_socket(sockets, personas, personas.v1)

    await tab.send_json_to(send("é" * 10_000, "long"))

    ack = await ws.receive_until(tab, "message.ack")
    assert ack["seq"] == 1
    assert await ws.db(lambda: len(Message.objects.get().body)) == 10_000


# --- relays -------------------------------------------------------------------------


async def test_visitor_typing_reaches_the_agent_and_no_visitor_tab(personas, sockets):
    tab, agent, conversation_id = await start_chat_with_alice(sockets, personas, personas.v1)
    other_tab, _ready = await visitor_socket(sockets, personas, personas.v1)

    await tab.send_json_to({"type": "typing", "active": True})

    typing = await ws.receive_until(agent, "typing")
    assert typing == {
        "type": "typing",
        "conversation": conversation_id,
        "from": "visitor",
        "active": True,
    }
    for socket in (tab, other_tab):
        assert [f for f in await ws.frames_before_pong(socket) if f["type"] == "typing"] == []


async def test_visitor_read_reaches_the_agent_and_not_the_socket_that_sent_it(personas, sockets):
    tab, agent, conversation_id = await start_chat_with_alice(sockets, personas, personas.v1)
    await agent.send_json_to(
        {
            "type": "message.send",
            "conversation": conversation_id,
            "client_msg_id": "r",
            "body": "Hi",
        }
    )
    await ws.receive_until(tab, "message")

    await tab.send_json_to({"type": "read", "seq": 2})

    read = await ws.receive_until(agent, "read")
    assert read == {"type": "read", "conversation": conversation_id, "seq": 2, "by": "visitor"}
    assert [f for f in await ws.frames_before_pong(tab) if f["type"] == "read"] == []
    assert (await conversation_of(personas.v1)).visitor_read_seq == 2


async def test_visitor_close_is_announced_to_both_sides_as_closed_by_the_visitor(personas, sockets):
    tab, agent, conversation_id = await start_chat_with_alice(sockets, personas, personas.v1)

    await tab.send_json_to({"type": "conversation.close"})

    closed = {"type": "conversation.closed", "conversation": conversation_id, "by": "visitor"}
    assert await ws.receive_until(tab, "conversation.closed") == closed
    assert await ws.receive_until(agent, "conversation.closed") == closed
    assert (await conversation_of(personas.v1)).status == "closed"


async def test_ping_is_answered_by_pong(personas, sockets):
    tab, _ready = await visitor_socket(sockets, personas, personas.v1)

    await tab.send_json_to({"type": "ping"})

    assert await ws.receive_until(tab, "pong") == {"type": "pong"}


# --- resume by seq ------------------------------------------------------------------


async def test_reconnecting_visitor_gets_missed_agent_messages_in_ready_and_not_again(
    personas, sockets
):
    tab, agent, conversation_id = await start_chat_with_alice(sockets, personas, personas.v1)
    await tab.disconnect()
    for n in range(3):
        await agent.send_json_to(
            {
                "type": "message.send",
                "conversation": conversation_id,
                "client_msg_id": f"while-away-{n}",
                "body": f"Answer {n}",
            }
        )
        await ws.receive_until(agent, "message.ack")

    back, ready = await visitor_socket(sockets, personas, personas.v1, last_seq=1)

    assert [(m["seq"], m["body"]) for m in ready["messages"]] == [
        (2, "Answer 0"),
        (3, "Answer 1"),
        (4, "Answer 2"),
    ]
    assert [f for f in await ws.frames_before_pong(back) if f["type"] == "message"] == []
    # Later messages still arrive live.
    await agent.send_json_to(
        {"type": "message.send", "conversation": conversation_id, "client_msg_id": "x", "body": "!"}
    )
    assert (await ws.receive_until(back, "message"))["seq"] == 5


async def test_messages_committed_while_ready_is_built_are_not_sent_again(
    personas, sockets, monkeypatch
):
    # The race `ready` must cover: the socket joins its group, then messages commit
    # (and are broadcast to it) before `ready` reads the history that includes them.
    _tab, _agent, conversation_id = await start_chat_with_alice(sockets, personas, personas.v1)
    build_ready = resume.visitor_ready
    build_ready_on_loop = resume.counted_ready_on_loop

    def agent_writes_meanwhile():
        for n in range(3):
            sending.post_message(
                Actor.agent(personas.alice.id),
                conversation_id=conversation_id,
                client_msg_id=f"meanwhile-{n}",
                body=f"Meanwhile {n}",
            )

    def ready_with_agent_writing_meanwhile(visitor, last_seq, **kwargs):
        agent_writes_meanwhile()
        return build_ready(visitor, last_seq, **kwargs)

    async def ready_on_loop_with_agent_writing_meanwhile(visitor, last_seq, **kwargs):
        # PostgreSQL: `ready` is read on the event loop (resume.counted_ready_on_loop).
        await ws.db(agent_writes_meanwhile)
        return await build_ready_on_loop(visitor, last_seq, **kwargs)

    monkeypatch.setattr(resume, "visitor_ready", ready_with_agent_writing_meanwhile)
    monkeypatch.setattr(resume, "counted_ready_on_loop", ready_on_loop_with_agent_writing_meanwhile)

    back, ready = await visitor_socket(sockets, personas, personas.v1, last_seq=1)

    assert [m["seq"] for m in ready["messages"]] == [2, 3, 4]
    assert [f for f in await ws.frames_before_pong(back) if f["type"] == "message"] == []


# --- refused hello ------------------------------------------------------------------


@pytest.mark.parametrize(
    "first_frame",
    [
        pytest.param('{"type": "ping"}', id="ping-before-hello"),
        pytest.param('{"type": "message.send", "client_msg_id": "a", "body": "hi"}', id="send"),
        pytest.param("hello there", id="not-json"),
        pytest.param('["hello"]', id="json-array"),
        pytest.param('{"type": "hello", "site_key": "k"}', id="hello-without-token"),
    ],
)
async def test_a_first_frame_that_is_not_a_valid_hello_closes_with_4400(
    personas, sockets, first_frame
):
    tab = await sockets.visitor_connected()

    await tab.send_to(text_data=first_frame)

    code, frames = await ws.receive_close(tab)
    assert code == 4400
    assert frames == []
    assert await stored() == (0, 0)


async def test_a_socket_that_never_says_hello_is_closed_with_4400(personas, sockets, monkeypatch):
    monkeypatch.setattr(consumers, "HELLO_TIMEOUT", 0.2)
    tab = await sockets.visitor_connected()

    assert await ws.receive_close(tab) == (4400, [])


async def test_a_hello_the_server_is_slow_to_answer_is_not_closed_by_the_hello_deadline(
    personas, sockets, monkeypatch
):
    # A reconnect storm: the database answers a hello later than HELLO_TIMEOUT.
    monkeypatch.setattr(consumers, "HELLO_TIMEOUT", 0.2)
    identify = hello_reads.identify

    async def slow_identify(hello):
        await asyncio.sleep(0.6)
        return await identify(hello)

    monkeypatch.setattr(hello_reads, "identify", slow_identify)

    _tab, ready = await visitor_socket(sockets, personas, personas.v1)

    assert ready["type"] == "ready"


async def test_hello_with_a_wrong_visitor_token_closes_with_4401(personas, sockets, caplog):
    caplog.set_level(logging.INFO, logger="chat.transport")
    tab = await sockets.visitor_connected()

    await tab.send_json_to(ws.hello(personas.acme.key, "not-a-token-we-issued"))

    code, frames = await ws.receive_close(tab)
    assert (code, frames) == (4401, [])
    assert any("hello refused" in r.getMessage() for r in caplog.records)


async def test_hello_with_another_sites_visitor_token_closes_with_4401(personas, sockets):
    globex = await ws.db(Site.objects.create, name="globex", allowed_origins=[ws.ACME_ORIGIN])
    _globex_visitor, globex_token = await ws.db(
        sessions.create_visitor_session, site_key=globex.key, visitor_token=None
    )
    tab = await sockets.visitor_connected()

    await tab.send_json_to(ws.hello(personas.acme.key, globex_token))

    assert await ws.receive_close(tab) == (4401, [])


async def test_hello_with_an_unknown_site_key_closes_with_4401(personas, sockets):
    tab = await sockets.visitor_connected()

    await tab.send_json_to(ws.hello("no-such-site", personas.token(personas.v1)))

    assert await ws.receive_close(tab) == (4401, [])


async def test_hello_on_a_disabled_site_closes_with_4403(personas, sockets):
    await ws.db(Site.objects.filter(pk=personas.acme.pk).update, enabled=False)
    tab = await sockets.visitor_connected()

    await tab.send_json_to(ws.hello(personas.acme.key, personas.token(personas.v1)))

    assert await ws.receive_close(tab) == (4403, [])


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param(ws.FOREIGN_ORIGIN, id="foreign-site"),
        pytest.param("http://acme.example", id="site-origin-other-scheme"),
        pytest.param(f"{ws.APP_ORIGIN}:8000", id="app-host-other-port"),
    ],
)
async def test_hello_from_an_origin_the_site_does_not_allow_closes_with_4403(
    personas, sockets, caplog, origin
):
    caplog.set_level(logging.INFO, logger="chat.transport")
    tab = await sockets.visitor_connected(origin=origin)

    await tab.send_json_to(ws.hello(personas.acme.key, personas.token(personas.v1)))

    assert await ws.receive_close(tab) == (4403, [])
    assert any(r.levelno == logging.WARNING and "origin" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param(ws.ACME_ORIGIN, id="site-origin"),
        pytest.param(ws.APP_ORIGIN, id="app-own-origin-widget-frame"),
    ],
)
async def test_hello_from_the_sites_origin_or_the_apps_own_origin_is_ready(
    personas, sockets, origin
):
    _tab, ready = await visitor_socket(sockets, personas, personas.v1, origin=origin)

    assert ready["type"] == "ready"


# --- refused frames after hello -------------------------------------------------------

BAD_FRAMES = [
    pytest.param("not json at all", "bad_frame", None, id="not-json"),
    pytest.param("[1, 2]", "bad_frame", None, id="json-array"),
    pytest.param('{"body": "hi"}', "bad_frame", None, id="no-type"),
    pytest.param('{"type": "shout", "body": "hi"}', "bad_frame", None, id="unknown-type"),
    pytest.param('{"type": "message.send", "body": "hi"}', "bad_frame", None, id="no-msg-id"),
    pytest.param(
        '{"type": "message.send", "client_msg_id": "m1"}', "bad_frame", "m1", id="no-body"
    ),
    pytest.param(
        '{"type": "message.send", "client_msg_id": "m1", "body": 5}', "bad_frame", "m1", id="int"
    ),
    pytest.param(
        '{"type": "message.send", "client_msg_id": "m1", "body": ""}', "bad_frame", "m1", id="empty"
    ),
    pytest.param(
        '{"type": "message.send", "client_msg_id": "m1", "body": " \\n\\t "}',
        "bad_frame",
        "m1",
        id="whitespace",
    ),
    pytest.param(
        json.dumps(send("x" * 10_001, "m1")), "too_long", "m1", id="body-over-10000-chars"
    ),
    pytest.param(json.dumps(send("hi", "x" * 65)), "bad_frame", None, id="client-msg-id-65"),
    pytest.param(json.dumps(send("hi", "")), "bad_frame", None, id="client-msg-id-empty"),
    pytest.param(
        '{"type": "message.send", "client_msg_id": 7, "body": "hi"}',
        "bad_frame",
        None,
        id="client-msg-id-int",
    ),
    pytest.param('{"type": "typing", "active": "yes"}', "bad_frame", None, id="active-yes"),
    pytest.param('{"type": "typing"}', "bad_frame", None, id="typing-no-active"),
    pytest.param('{"type": "read", "seq": "3"}', "bad_frame", None, id="seq-string"),
    pytest.param('{"type": "read", "seq": -1}', "bad_frame", None, id="seq-negative"),
    pytest.param('{"type": "hello"}', "bad_frame", None, id="second-hello"),
    # Text PostgreSQL cannot store is refused, not answered "unavailable, retry" forever.
    pytest.param(
        '{"type": "message.send", "client_msg_id": "m1", "body": "a\\u0000b"}',
        "bad_frame",
        "m1",
        id="body-nul",
    ),
    pytest.param(
        '{"type": "message.send", "client_msg_id": "m1", "body": "a\\ud800b"}',
        "bad_frame",
        "m1",
        id="body-unpaired-surrogate",
    ),
    pytest.param(
        '{"type": "message.send", "client_msg_id": "m\\u0000", "body": "hi"}',
        "bad_frame",
        None,
        id="client-msg-id-nul",
    ),
]


@pytest.mark.parametrize(("frame", "code", "client_msg_id"), BAD_FRAMES)
async def test_bad_frame_gets_an_error_and_stores_nothing(
    personas, sockets, frame, code, client_msg_id
):
    tab, _ready = await visitor_socket(sockets, personas, personas.v1)

    await tab.send_to(text_data=frame)

    error, before = await ws.receive_frames_until(tab, "error")
    assert before == []
    assert error["code"] == code
    assert error["detail"]
    assert error.get("client_msg_id") == client_msg_id
    assert await stored() == (0, 0)
    # The socket stays usable.
    assert await ws.frames_before_pong(tab) == []


async def test_binary_frame_gets_bad_frame(personas, sockets):
    tab, _ready = await visitor_socket(sockets, personas, personas.v1)

    await tab.send_to(bytes_data=b'{"type": "ping"}')

    assert (await ws.receive_until(tab, "error"))["code"] == "bad_frame"


async def test_refused_frames_are_logged_with_their_code(personas, sockets, caplog):
    caplog.set_level(logging.INFO, logger="chat.transport")
    tab, _ready = await visitor_socket(sockets, personas, personas.v1)

    await tab.send_json_to(send("x" * 10_001, "m1"))
    await ws.receive_until(tab, "error")

    refused = [r.getMessage() for r in caplog.records if r.name.startswith("chat.transport")]
    assert any("refused frame" in m and "too_long" in m for m in refused)


async def test_a_frame_over_64_kib_closes_the_socket_with_4009_and_stores_nothing(
    personas, sockets, caplog
):
    caplog.set_level(logging.INFO, logger="chat.transport")
    tab, _ready = await visitor_socket(sockets, personas, personas.v1)

    await tab.send_json_to(send("x" * (64 * 1024), "huge"))

    assert await ws.receive_close(tab) == (4009, [])
    assert await stored() == (0, 0)
    assert any("-byte frame" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param({"type": "typing", "active": True}, id="typing"),
        pytest.param({"type": "read", "seq": 0}, id="read"),
        pytest.param({"type": "conversation.close"}, id="close"),
    ],
)
async def test_frames_about_a_conversation_without_an_open_one_get_not_found(
    personas, sockets, frame
):
    tab, _ready = await visitor_socket(sockets, personas, personas.v1)

    await tab.send_json_to(frame)

    assert (await ws.receive_until(tab, "error"))["code"] == "not_found"
    assert await stored() == (0, 0)


async def test_close_after_the_conversation_closed_gets_not_found(personas, sockets):
    tab, _agent, _conversation_id = await start_chat_with_alice(sockets, personas, personas.v1)
    await tab.send_json_to({"type": "conversation.close"})
    await ws.receive_until(tab, "conversation.closed")

    await tab.send_json_to({"type": "conversation.close"})

    assert (await ws.receive_until(tab, "error"))["code"] == "not_found"


async def test_read_past_the_last_seq_gets_bad_frame_and_changes_nothing(personas, sockets):
    tab, agent, _conversation_id = await start_chat_with_alice(sockets, personas, personas.v1)

    await tab.send_json_to({"type": "read", "seq": 2})

    assert (await ws.receive_until(tab, "error"))["code"] == "bad_frame"
    assert (await conversation_of(personas.v1)).visitor_read_seq == 0
    assert [f for f in await ws.frames_before_pong(agent) if f["type"] == "read"] == []


async def test_a_flood_is_refused_with_rate_limited_then_closed_with_4008_storing_nothing_more(
    personas, sockets, settings, caplog
):
    caplog.set_level(logging.INFO, logger="chat.transport")
    # Burst 5 (hello and four messages), and practically no refill during the test.
    settings.SUPPORTDESK_VISITOR_RATE = (5, 0.001)
    tab, _ready = await visitor_socket(sockets, personas, personas.v1)
    for n in range(4):
        await tab.send_json_to(send(f"message {n}", f"ok-{n}"))
        await ws.receive_until(tab, "message.ack")

    for n in range(15):
        await tab.send_json_to(send(f"flood {n}", f"flood-{n}"))

    code, frames = await ws.receive_close(tab)
    assert code == 4008
    errors = [f for f in frames if f["type"] == "error"]
    assert [e["code"] for e in errors] == ["rate_limited"] * 10
    assert [f for f in frames if f["type"] == "message.ack"] == []
    # Let the socket finish handling what was still in flight before counting.
    await tab.disconnect()
    assert await ws.db(Message.objects.count) == 4
    assert any(r.levelno == logging.WARNING and "flood" in r.getMessage() for r in caplog.records)
