"""The agent socket's wire contract, through the real ASGI application with a real
session cookie: sign-in and Origin, ready, assignment, relays, sync, closing, and the
refusals that keep one agent out of another's conversations."""

import json
import logging

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from agents.models import AgentProfile
from chat.conversations import closing, sending
from chat.conversations.actors import Actor
from chat.models import Conversation, Message
from tests import ws

pytestmark = pytest.mark.django_db(transaction=True)


async def visitor_socket(sockets, personas, visitor, *, last_seq=None):
    return await sockets.visitor(personas.acme.key, personas.token(visitor), last_seq=last_seq)


async def open_chat(visitor, body: str = "Hello") -> int:
    """The visitor writes first; returns the conversation id (routing as the services do)."""
    posted = await ws.run_service(
        sending.post_message,
        Actor.visitor(visitor.id),
        client_msg_id=f"open-{visitor.id}",
        body=body,
    )
    return posted.message["conversation"]


async def conversation(conversation_id: int) -> Conversation:
    return await ws.db(Conversation.objects.get, pk=conversation_id)


async def set_away(*agents) -> None:
    await ws.db(
        AgentProfile.objects.filter(pk__in=[a.pk for a in agents]).update,
        status=AgentProfile.Status.AWAY,
    )


async def message_count() -> int:
    return await ws.db(Message.objects.count)


def send(conversation_id, body, client_msg_id) -> dict:
    return {
        "type": "message.send",
        "conversation": conversation_id,
        "client_msg_id": client_msg_id,
        "body": body,
    }


def of_type(frames: list[dict], frame_type: str) -> list[dict]:
    return [f for f in frames if f["type"] == frame_type]


# --- signing in ---------------------------------------------------------------------


async def test_agent_socket_without_a_session_is_closed_with_4401(personas, sockets):
    socket = sockets.track(ws.agent_communicator(None))

    connected, _ = await socket.connect(timeout=ws.TIMEOUT)

    assert connected
    assert await ws.receive_close(socket) == (4401, [])


async def test_signed_in_user_without_an_agent_profile_is_closed_with_4401(personas, sockets):
    user = await ws.db(get_user_model().objects.create_user, "mallory", password="mallory-pass")
    socket = sockets.track(ws.agent_communicator(await ws.session_cookie(user)))

    connected, _ = await socket.connect(timeout=ws.TIMEOUT)

    assert connected
    assert await ws.receive_close(socket) == (4401, [])


async def test_deactivated_agent_login_is_closed_with_4401(personas, sockets):
    cookie = await ws.session_cookie(personas.alice.user)
    await ws.db(get_user_model().objects.filter(pk=personas.alice.user_id).update, is_active=False)
    socket = sockets.track(ws.agent_communicator(cookie))

    connected, _ = await socket.connect(timeout=ws.TIMEOUT)

    assert connected
    assert await ws.receive_close(socket) == (4401, [])


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param(ws.FOREIGN_ORIGIN, id="foreign-site"),
        pytest.param(ws.ACME_ORIGIN, id="customer-site"),
        pytest.param(f"{ws.APP_ORIGIN}:8000", id="app-host-other-port"),
        pytest.param(None, id="no-origin"),
    ],
)
async def test_agent_socket_from_another_origin_is_refused_at_the_handshake(
    personas, sockets, caplog, origin
):
    caplog.set_level(logging.INFO, logger="chat.transport")
    cookie = await ws.session_cookie(personas.alice.user)
    socket = sockets.track(ws.agent_communicator(cookie, origin=origin))

    connected, _code = await socket.connect(timeout=ws.TIMEOUT)

    assert not connected
    assert any("agent socket refused" in r.getMessage() for r in caplog.records)


# --- ready and assignment -------------------------------------------------------------


async def test_ready_lists_the_agents_open_conversations_and_the_queue_length(personas, sockets):
    await set_away(personas.bob)
    first = await open_chat(personas.v1)
    second = await open_chat(personas.v2)
    queued = await open_chat(personas.v3)
    assert (await conversation(queued)).status == "queued"

    _socket, ready = await sockets.agent(personas.alice)

    assert ready["agent"]["display_name"] == "Alice"
    assert [c["id"] for c in ready["conversations"]] == [first, second]
    assert ready["conversations"][0]["status"] == "active"
    assert ready["conversations"][0]["visitor"] == {"id": personas.v1.id}
    assert ready["conversations"][0]["last_seq"] == 1
    assert ready["conversations"][0]["unread"] == 1
    assert ready["queue_length"] == 1


async def test_assignment_gives_the_agent_visitor_and_full_history_and_the_visitor_the_agent_name(
    personas, sockets
):
    await set_away(personas.alice, personas.bob)
    visitor, _ready = await visitor_socket(sockets, personas, personas.v1)
    seen = []
    for n, body in enumerate(["Hi", "My parcel", "is late"]):
        await visitor.send_json_to({"type": "message.send", "client_msg_id": f"m{n}", "body": body})
        _ack, before = await ws.receive_frames_until(visitor, "message.ack")
        seen += before
    seen += await ws.frames_before_pong(visitor)
    [queued] = of_type(seen, "conversation.queued")
    assert queued["position"] == 1
    agent, ready = await sockets.agent(personas.alice)
    assert ready["queue_length"] == 1

    await agent.send_json_to({"type": "presence", "status": "available"})

    agent_copy = await ws.receive_until(agent, "conversation.assigned")
    visitor_copy = await ws.receive_until(visitor, "conversation.assigned")
    conversation_id = queued["conversation"]
    assert agent_copy["conversation"]["id"] == conversation_id
    assert agent_copy["conversation"]["status"] == "active"
    assert agent_copy["conversation"]["visitor"] == {"id": personas.v1.id}
    assert agent_copy["conversation"]["last_seq"] == 3
    assert agent_copy["conversation"]["unread"] == 3
    assert [(m["seq"], m["sender"], m["body"]) for m in agent_copy["conversation"]["messages"]] == [
        (1, "visitor", "Hi"),
        (2, "visitor", "My parcel"),
        (3, "visitor", "is late"),
    ]
    assert visitor_copy["conversation"] == {
        **visitor_copy["conversation"],
        "id": conversation_id,
        "status": "active",
        "queue_position": None,
        "agent": {"display_name": "Alice"},
    }
    assert "visitor" not in visitor_copy["conversation"]
    assert "messages" not in visitor_copy["conversation"]


async def test_presence_is_confirmed_and_an_away_agent_gets_no_new_chats(personas, sockets):
    await set_away(personas.bob)
    agent, _ready = await sockets.agent(personas.alice)

    await agent.send_json_to({"type": "presence", "status": "away"})

    assert await ws.receive_until(agent, "presence") == {"type": "presence", "status": "away"}
    conversation_id = await open_chat(personas.v1)
    assert (await conversation(conversation_id)).status == "queued"
    assert of_type(await ws.frames_before_pong(agent), "conversation.assigned") == []

    await agent.send_json_to({"type": "presence", "status": "available"})

    assert await ws.receive_until(agent, "presence") == {"type": "presence", "status": "available"}
    assigned = await ws.receive_until(agent, "conversation.assigned")
    assert assigned["conversation"]["id"] == conversation_id


# --- sending and relays ---------------------------------------------------------------


async def test_agent_message_is_acked_to_its_socket_and_delivered_once_to_every_other_socket(
    personas, sockets
):
    conversation_id = await open_chat(personas.v1)
    agent, _ready = await sockets.agent(personas.alice)
    other_agent_tab, _ready = await sockets.agent(personas.alice)
    visitor, _ready = await visitor_socket(sockets, personas, personas.v1)
    other_visitor_tab, _ready = await visitor_socket(sockets, personas, personas.v1)

    await agent.send_json_to(send(conversation_id, "Let me check", "reply-1"))

    ack = await ws.receive_until(agent, "message.ack")
    assert ack == {
        "type": "message.ack",
        "client_msg_id": "reply-1",
        "conversation": conversation_id,
        "seq": 2,
    }
    for socket in (visitor, other_visitor_tab, other_agent_tab):
        message = await ws.receive_until(socket, "message")
        assert (message["conversation"], message["seq"]) == (conversation_id, 2)
        assert (message["sender"], message["body"]) == ("agent", "Let me check")
        assert message["client_msg_id"] == "reply-1"
        assert message["sent_at"]
        assert of_type(await ws.frames_before_pong(socket), "message") == []
    assert of_type(await ws.frames_before_pong(agent), "message") == []


async def test_retried_agent_send_with_the_same_client_msg_id_stores_one_message(personas, sockets):
    conversation_id = await open_chat(personas.v1)
    agent, _ready = await sockets.agent(personas.alice)

    await agent.send_json_to(send(conversation_id, "On it", "same"))
    first_ack = await ws.receive_until(agent, "message.ack")
    await agent.send_json_to(send(conversation_id, "On it", "same"))
    second_ack = await ws.receive_until(agent, "message.ack")

    assert second_ack == first_ack
    assert await message_count() == 2


async def test_agent_typing_reaches_the_visitor_and_not_the_agent(personas, sockets):
    conversation_id = await open_chat(personas.v1)
    agent, _ready = await sockets.agent(personas.alice)
    other_agent_tab, _ready = await sockets.agent(personas.alice)
    visitor, _ready = await visitor_socket(sockets, personas, personas.v1)

    await agent.send_json_to({"type": "typing", "conversation": conversation_id, "active": True})

    assert await ws.receive_until(visitor, "typing") == {
        "type": "typing",
        "conversation": conversation_id,
        "from": "agent",
        "active": True,
    }
    for socket in (agent, other_agent_tab):
        assert of_type(await ws.frames_before_pong(socket), "typing") == []


async def test_agent_read_reaches_the_visitor_and_not_the_socket_that_sent_it(personas, sockets):
    conversation_id = await open_chat(personas.v1)
    agent, _ready = await sockets.agent(personas.alice)
    visitor, _ready = await visitor_socket(sockets, personas, personas.v1)

    await agent.send_json_to({"type": "read", "conversation": conversation_id, "seq": 1})

    assert await ws.receive_until(visitor, "read") == {
        "type": "read",
        "conversation": conversation_id,
        "seq": 1,
        "by": "agent",
    }
    assert of_type(await ws.frames_before_pong(agent), "read") == []
    stored = await conversation(conversation_id)
    assert (stored.agent_read_seq, stored.agent_unread) == (1, 0)


async def test_sync_is_answered_by_one_frame_with_the_messages_after_the_given_seq(
    personas, sockets
):
    conversation_id = await open_chat(personas.v1, body="one")
    agent, _ready = await sockets.agent(personas.alice)
    for n, body in enumerate(["two", "three"]):
        await agent.send_json_to(send(conversation_id, body, f"r{n}"))
        await ws.receive_until(agent, "message.ack")

    await agent.send_json_to({"type": "sync", "conversation": conversation_id, "after_seq": 1})

    reply, before = await ws.receive_frames_until(agent, "sync")
    assert of_type(before, "sync") == []
    assert {k: reply[k] for k in ("conversation", "after_seq", "last_seq")} == {
        "conversation": conversation_id,
        "after_seq": 1,
        "last_seq": 3,
    }
    assert [(m["seq"], m["body"]) for m in reply["messages"]] == [(2, "two"), (3, "three")]
    assert of_type(await ws.frames_before_pong(agent), "sync") == []


async def test_agent_close_is_announced_to_both_sides_and_hands_the_slot_to_the_next_visitor(
    personas, sockets
):
    await set_away(personas.bob)
    first = await open_chat(personas.v1)
    await open_chat(personas.v2)
    waiting = await open_chat(personas.v3)
    agent, _ready = await sockets.agent(personas.alice)
    visitor, _ready = await visitor_socket(sockets, personas, personas.v1)
    next_visitor, ready = await visitor_socket(sockets, personas, personas.v3)
    assert ready["conversation"]["queue_position"] == 1

    await agent.send_json_to({"type": "conversation.close", "conversation": first})

    closed = {"type": "conversation.closed", "conversation": first, "by": "agent"}
    assert await ws.receive_until(agent, "conversation.closed") == closed
    assert await ws.receive_until(visitor, "conversation.closed") == closed
    assigned = await ws.receive_until(next_visitor, "conversation.assigned")
    assert assigned["conversation"]["id"] == waiting
    assert assigned["conversation"]["agent"] == {"display_name": "Alice"}
    assert (await ws.receive_until(agent, "conversation.assigned"))["conversation"]["id"] == waiting
    assert (await conversation(first)).status == "closed"


async def test_ping_is_answered_by_pong_and_refreshes_the_heartbeat(personas, sockets):
    agent, _ready = await sockets.agent(personas.alice)
    stale = timezone.now() - timezone.timedelta(minutes=5)
    await ws.db(AgentProfile.objects.filter(pk=personas.alice.pk).update, last_heartbeat=stale)

    await agent.send_json_to({"type": "ping"})

    assert await ws.receive_until(agent, "pong") == {"type": "pong"}
    # The heartbeat is written after the pong is sent; the next pong proves it is done.
    await ws.frames_before_pong(agent)
    refreshed = await ws.db(lambda: AgentProfile.objects.get(pk=personas.alice.pk).last_heartbeat)
    assert refreshed > stale + timezone.timedelta(minutes=4)


# --- refusals -----------------------------------------------------------------------

NAMING_FRAMES = {
    "message.send": lambda c: send(c, "Let me in", "probe"),
    "typing": lambda c: {"type": "typing", "conversation": c, "active": True},
    "read": lambda c: {"type": "read", "conversation": c, "seq": 1},
    "sync": lambda c: {"type": "sync", "conversation": c, "after_seq": 0},
    "conversation.close": lambda c: {"type": "conversation.close", "conversation": c},
}


async def conversation_state(conversation_id: int) -> tuple:
    c = await conversation(conversation_id)
    return (c.status, c.agent_id, c.last_seq, c.agent_read_seq, c.agent_unread, c.closed_by)


@pytest.mark.parametrize("kind", list(NAMING_FRAMES))
async def test_naming_another_agents_conversation_is_not_found_exactly_like_a_missing_one(
    personas, sockets, caplog, kind
):
    caplog.set_level(logging.INFO, logger="chat.transport")
    await open_chat(personas.v1)
    bobs = await open_chat(personas.v2)
    assert (await conversation(bobs)).agent_id == personas.bob.id
    missing = bobs + 1000
    before = (await conversation_state(bobs), await message_count())
    agent, _ready = await sockets.agent(personas.alice)
    bobs_visitor, _ready = await visitor_socket(sockets, personas, personas.v2)

    await agent.send_json_to(NAMING_FRAMES[kind](bobs))
    foreign_error = await ws.receive_until(agent, "error")
    await agent.send_json_to(NAMING_FRAMES[kind](missing))
    missing_error = await ws.receive_until(agent, "error")

    assert foreign_error["code"] == "not_found"
    assert foreign_error == missing_error
    assert (await conversation_state(bobs), await message_count()) == before
    assert of_type(await ws.frames_before_pong(agent), "sync") == []
    assert await ws.frames_before_pong(bobs_visitor) == []
    assert any("not_found" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kind", ["message.send", "typing", "read", "conversation.close"])
async def test_acting_on_own_closed_conversation_gets_conversation_closed(personas, sockets, kind):
    conversation_id = await open_chat(personas.v1)
    await ws.run_service(
        closing.close_conversation, Actor.agent(personas.alice.id), conversation_id=conversation_id
    )
    before = (await conversation_state(conversation_id), await message_count())
    agent, _ready = await sockets.agent(personas.alice)

    await agent.send_json_to(NAMING_FRAMES[kind](conversation_id))

    assert (await ws.receive_until(agent, "error"))["code"] == "conversation_closed"
    assert (await conversation_state(conversation_id), await message_count()) == before


async def test_read_past_the_last_seq_gets_bad_frame_and_changes_nothing(personas, sockets):
    conversation_id = await open_chat(personas.v1)
    agent, _ready = await sockets.agent(personas.alice)
    visitor, _ready = await visitor_socket(sockets, personas, personas.v1)

    await agent.send_json_to({"type": "read", "conversation": conversation_id, "seq": 2})

    assert (await ws.receive_until(agent, "error"))["code"] == "bad_frame"
    assert (await conversation(conversation_id)).agent_read_seq == 0
    assert of_type(await ws.frames_before_pong(visitor), "read") == []


def bad_frames(c: int) -> list[tuple[str, str, str | None]]:
    """(frame text, error code, client_msg_id echoed) for conversation id `c`."""
    return [
        ("{not json", "bad_frame", None),
        ('"just a string"', "bad_frame", None),
        ('{"type": "hello", "site_key": "k", "visitor_token": "t"}', "bad_frame", None),
        ('{"type": "message.send", "client_msg_id": "m", "body": "hi"}', "bad_frame", None),
        (json.dumps(send("x", "hi", "m")), "bad_frame", None),
        (json.dumps(send(True, "hi", "m")), "bad_frame", None),
        (json.dumps(send(c, 5, "m")), "bad_frame", "m"),
        (json.dumps(send(c, "", "m")), "bad_frame", "m"),
        (json.dumps(send(c, "   ", "m")), "bad_frame", "m"),
        (json.dumps(send(c, "x" * 10_001, "m")), "too_long", "m"),
        (json.dumps(send(c, "hi", "x" * 65)), "bad_frame", None),
        (json.dumps({"type": "message.send", "conversation": c, "body": "hi"}), "bad_frame", None),
        (json.dumps({"type": "typing", "conversation": c, "active": "yes"}), "bad_frame", None),
        (json.dumps({"type": "typing", "active": True}), "bad_frame", None),
        (json.dumps({"type": "read", "conversation": c}), "bad_frame", None),
        (json.dumps({"type": "read", "conversation": c, "seq": 1.5}), "bad_frame", None),
        (json.dumps({"type": "sync", "conversation": c, "after_seq": -1}), "bad_frame", None),
        (json.dumps({"type": "presence", "status": "busy"}), "bad_frame", None),
        (json.dumps({"type": "presence"}), "bad_frame", None),
    ]


BAD_FRAME_IDS = [
    "not-json",
    "json-string",
    "visitor-hello",
    "send-no-conversation",
    "conversation-string",
    "conversation-bool",
    "body-int",
    "body-empty",
    "body-whitespace",
    "body-over-10000-chars",
    "client-msg-id-65",
    "send-no-client-msg-id",
    "active-yes",
    "typing-no-conversation",
    "read-no-seq",
    "seq-float",
    "after-seq-negative",
    "presence-busy",
    "presence-no-status",
]


@pytest.mark.parametrize("case", range(len(BAD_FRAME_IDS)), ids=BAD_FRAME_IDS)
async def test_bad_frame_gets_an_error_and_changes_nothing(personas, sockets, case):
    conversation_id = await open_chat(personas.v1)
    frame, code, client_msg_id = bad_frames(conversation_id)[case]
    before = (await conversation_state(conversation_id), await message_count())
    agent, _ready = await sockets.agent(personas.alice)
    visitor, _ready = await visitor_socket(sockets, personas, personas.v1)

    await agent.send_to(text_data=frame)

    error = await ws.receive_until(agent, "error")
    assert error["code"] == code
    assert error["detail"]
    assert error.get("client_msg_id") == client_msg_id
    assert (await conversation_state(conversation_id), await message_count()) == before
    assert await ws.frames_before_pong(visitor) == []
    presence = await ws.db(lambda: AgentProfile.objects.get(pk=personas.alice.pk).status)
    assert presence == "available"


async def test_a_frame_over_64_kib_closes_the_socket_with_4009_and_stores_nothing(
    personas, sockets
):
    conversation_id = await open_chat(personas.v1)
    agent, _ready = await sockets.agent(personas.alice)

    await agent.send_json_to(send(conversation_id, "x" * (64 * 1024), "huge"))

    assert await ws.receive_close(agent) == (4009, [])
    assert await message_count() == 1


async def test_a_flood_is_refused_with_rate_limited_then_closed_with_4008_storing_nothing_more(
    personas, sockets, settings
):
    # Burst 3 and practically no refill during the test.
    settings.SUPPORTDESK_AGENT_RATE = (3, 0.001)
    conversation_id = await open_chat(personas.v1)
    agent, _ready = await sockets.agent(personas.alice)
    for n in range(3):
        await agent.send_json_to(send(conversation_id, f"reply {n}", f"ok-{n}"))
        await ws.receive_until(agent, "message.ack")

    for n in range(12):
        await agent.send_json_to(send(conversation_id, f"flood {n}", f"flood-{n}"))

    code, frames = await ws.receive_close(agent)
    assert code == 4008
    assert [f["code"] for f in of_type(frames, "error")] == ["rate_limited"] * 10
    assert of_type(frames, "message.ack") == []
    await agent.disconnect()
    assert await message_count() == 4
