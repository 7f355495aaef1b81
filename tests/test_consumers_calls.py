"""Calls through the real sockets (docs/protocol.md "Calls"): ringing, answering,
signals relayed to the other participant's call tab only, hanging up, declining, the
timeout, a call tab closing, the visitor's last tab closing while it rings, a tab
opened while it rings, and the refusals: a third party, a closed chat, an oversize
signal, a flood."""

import asyncio

import pytest
from channels.layers import get_channel_layer
from django.test import override_settings

from chat.conversations import closing, sending
from chat.conversations.actors import Actor
from chat.models import Call, Message, VisitorSocket
from chat.realtime import groups
from chat.transport import socket as transport_socket
from tests import ws

pytestmark = pytest.mark.django_db(transaction=True)

OFFER = {"type": "offer", "sdp": "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\n"}
CANDIDATE = {"candidate": {"candidate": "candidate:1 1 udp 2122260223 10.0.0.2 53421 typ host"}}


async def open_chat(visitor) -> int:
    posted = await ws.run_service(
        sending.post_message, Actor.visitor(visitor.id), client_msg_id="open", body="Hello"
    )
    return posted.message["conversation"]


async def visitor_socket(sockets, personas, visitor):
    socket, _ready = await sockets.visitor(personas.acme.key, personas.token(visitor))
    return socket


async def ringing(sockets, personas, media="video"):
    """v1 chats with alice; alice's tab rings v1's tab. Returns (agent, visitor, invited
    as the visitor saw it, conversation id)."""
    conversation = await open_chat(personas.v1)
    agent, _ready = await sockets.agent(personas.alice)
    visitor = await visitor_socket(sockets, personas, personas.v1)
    await agent.send_json_to({"type": "call.invite", "conversation": conversation, "media": media})
    invited = await ws.receive_until(visitor, "call.invited")
    await ws.receive_until(agent, "call.invited")
    return agent, visitor, invited, conversation


async def in_call(sockets, personas, media="video"):
    agent, visitor, invited, conversation = await ringing(sockets, personas, media)
    await visitor.send_json_to({"type": "call.accept", "call_id": invited["call_id"]})
    await ws.receive_until(agent, "call.accepted")
    await ws.receive_until(visitor, "call.accepted")
    return agent, visitor, invited["call_id"], conversation


async def system_lines(conversation: int) -> list[str]:
    rows = Message.objects.filter(conversation_id=conversation, sender="system").order_by("seq")
    return await ws.db(lambda: list(rows.values_list("body", flat=True)))


async def test_a_call_rings_both_sides_with_the_agent_named_and_ice_servers(personas, sockets):
    with override_settings(
        SUPPORTDESK_STUN_URLS=["stun:turn.example.com:3478"],
        SUPPORTDESK_TURN_URLS=["turn:turn.example.com:3478?transport=udp"],
        SUPPORTDESK_TURN_SECRET="north-wind",
    ):
        conversation = await open_chat(personas.v1)
        agent, _ready = await sockets.agent(personas.alice)
        other_agent_tab, _ready = await sockets.agent(personas.alice)
        visitor = await visitor_socket(sockets, personas, personas.v1)
        await agent.send_json_to(
            {"type": "call.invite", "conversation": conversation, "media": "audio"}
        )
        visitor_copy = await ws.receive_until(visitor, "call.invited")
        agent_copy = await ws.receive_until(agent, "call.invited")
        other_tab_copy = await ws.receive_until(other_agent_tab, "call.invited")

    assert visitor_copy["agent"] == {"display_name": "Alice"}
    assert visitor_copy["media"] == "audio" and visitor_copy["conversation"] == conversation
    assert "agent" not in agent_copy and agent_copy == other_tab_copy
    assert agent_copy["call_id"] == visitor_copy["call_id"]
    stun, turn = visitor_copy["ice_servers"]
    assert stun == {"urls": ["stun:turn.example.com:3478"]}
    assert turn["urls"] == ["turn:turn.example.com:3478?transport=udp"]
    assert turn["username"].endswith(f":supportdesk-c{conversation}")
    assert await system_lines(conversation) == ["Alice started an audio call."]


async def test_signals_reach_the_other_sides_call_tab_unchanged_and_no_other_tab(personas, sockets):
    agent, visitor, call_id, _conversation = await in_call(sockets, personas)
    other_visitor_tab = await visitor_socket(sockets, personas, personas.v1)

    await agent.send_json_to({"type": "call.signal", "call_id": call_id, "data": OFFER})
    offer = await ws.receive_until(visitor, "call.signal")
    await visitor.send_json_to({"type": "call.signal", "call_id": call_id, "data": CANDIDATE})
    candidate = await ws.receive_until(agent, "call.signal")

    assert offer == {"type": "call.signal", "call_id": call_id, "data": OFFER}
    assert candidate == {"type": "call.signal", "call_id": call_id, "data": CANDIDATE}
    assert [
        f for f in await ws.frames_before_pong(other_visitor_tab) if f["type"] == "call.signal"
    ] == []


async def test_hanging_up_ends_it_for_both_with_the_duration_in_the_transcript(personas, sockets):
    agent, visitor, call_id, conversation = await in_call(sockets, personas)

    await visitor.send_json_to({"type": "call.end", "call_id": call_id})
    ended = await ws.receive_until(agent, "call.ended")
    visitor_copy = await ws.receive_until(visitor, "call.ended")

    assert (
        ended
        == visitor_copy
        == {
            "type": "call.ended",
            "conversation": conversation,
            "call_id": call_id,
            "reason": "hangup",
        }
    )
    lines = await system_lines(conversation)
    assert lines[:2] == ["Alice started a video call.", "The visitor joined the call."]
    assert lines[2].startswith("The call ended after 0:0")
    # Both hanging up: the second finds the call over.
    await agent.send_json_to({"type": "call.end", "call_id": call_id})
    assert (await ws.receive_until(agent, "error"))["code"] == "not_found"


async def test_the_visitor_declines_and_the_agent_is_told(personas, sockets):
    agent, visitor, invited, conversation = await ringing(sockets, personas)

    await visitor.send_json_to({"type": "call.decline", "call_id": invited["call_id"]})

    assert (await ws.receive_until(agent, "call.ended"))["reason"] == "declined"
    assert (await system_lines(conversation))[-1] == "The visitor declined the call."


async def test_an_unanswered_call_times_out_for_both(personas, sockets, settings):
    settings.SUPPORTDESK_CALL_RING_TIMEOUT = 0.3
    agent, visitor, invited, conversation = await ringing(sockets, personas)

    assert (await ws.receive_until(agent, "call.ended"))["reason"] == "timeout"
    assert (await ws.receive_until(visitor, "call.ended"))["reason"] == "timeout"
    assert (await system_lines(conversation))[-1] == "The call was not answered."
    # Answering too late is answering nothing.
    await visitor.send_json_to({"type": "call.accept", "call_id": invited["call_id"]})
    assert (await ws.receive_until(visitor, "error"))["code"] == "not_found"


async def test_the_visitors_call_tab_closing_ends_the_call_as_disconnected(personas, sockets):
    agent, visitor, call_id, conversation = await in_call(sockets, personas)

    await visitor.disconnect(timeout=ws.TIMEOUT)

    ended = await ws.receive_until(agent, "call.ended")
    assert ended["reason"] == "disconnected" and ended["call_id"] == call_id
    assert (await system_lines(conversation))[-1].endswith("(the connection was lost).")


async def test_the_agents_call_tab_closing_ends_a_ringing_call(personas, sockets):
    agent, visitor, _invited, _conversation = await ringing(sockets, personas)

    await agent.disconnect(timeout=ws.TIMEOUT)

    assert (await ws.receive_until(visitor, "call.ended"))["reason"] == "disconnected"


async def test_a_third_partys_call_frames_are_refused_and_relay_nothing(personas, sockets):
    agent, visitor, call_id, _conversation = await in_call(sockets, personas)
    bob, _ready = await sockets.agent(personas.bob)
    await open_chat(personas.v2)
    stranger = await visitor_socket(sockets, personas, personas.v2)

    for socket, frame in [
        (bob, {"type": "call.signal", "call_id": call_id, "data": OFFER}),
        (bob, {"type": "call.end", "call_id": call_id}),
        (stranger, {"type": "call.signal", "call_id": call_id, "data": OFFER}),
        (stranger, {"type": "call.accept", "call_id": call_id}),
        (stranger, {"type": "call.decline", "call_id": call_id}),
        (stranger, {"type": "call.end", "call_id": call_id}),
        (stranger, {"type": "call.end", "call_id": call_id + 1000}),
    ]:
        await socket.send_json_to(frame)
        error = await ws.receive_until(socket, "error")
        assert (error["code"], error["detail"]) == ("not_found", "No such call."), frame

    for socket in (agent, visitor):
        seen = await ws.frames_before_pong(socket)
        assert [f for f in seen if f["type"].startswith("call.")] == []
    assert await ws.db(Call.objects.filter(pk=call_id, status="active").exists)


async def test_another_agent_cannot_ring_a_chat_that_is_not_theirs(personas, sockets):
    conversation = await open_chat(personas.v1)  # alice's
    bob, _ready = await sockets.agent(personas.bob)

    await bob.send_json_to({"type": "call.invite", "conversation": conversation, "media": "audio"})

    assert (await ws.receive_until(bob, "error"))["code"] == "not_found"
    assert await ws.db(Call.objects.count) == 0


async def test_a_signal_over_16_kib_is_refused_and_not_relayed(personas, sockets):
    agent, visitor, call_id, _conversation = await in_call(sockets, personas)
    big = {"type": "offer", "sdp": "x" * (16 * 1024)}

    await agent.send_json_to({"type": "call.signal", "call_id": call_id, "data": big})

    error = await ws.receive_until(agent, "error")
    assert (error["code"], error["detail"]) == ("too_long", "data is over 16384 bytes.")
    assert [f for f in await ws.frames_before_pong(visitor) if f["type"] == "call.signal"] == []


async def test_a_closed_chat_ends_its_call_and_refuses_call_frames(personas, sockets):
    agent, _visitor, call_id, conversation = await in_call(sockets, personas)

    await ws.run_service(closing.close_conversation, Actor.visitor(personas.v1.id))
    assert (await ws.receive_until(agent, "call.ended"))["reason"] == "hangup"
    await agent.send_json_to({"type": "call.signal", "call_id": call_id, "data": OFFER})
    assert (await ws.receive_until(agent, "error"))["code"] == "not_found"
    await agent.send_json_to(
        {"type": "call.invite", "conversation": conversation, "media": "audio"}
    )
    assert (await ws.receive_until(agent, "error"))["code"] == "not_found"


async def test_one_call_per_conversation_at_a_time(personas, sockets):
    agent, _visitor, _invited, conversation = await ringing(sockets, personas)

    await agent.send_json_to(
        {"type": "call.invite", "conversation": conversation, "media": "audio"}
    )

    assert (await ws.receive_until(agent, "error"))["code"] == "call_in_progress"
    assert await ws.db(Call.objects.count) == 1


async def test_a_signal_flood_past_the_shared_limit_is_refused(personas, sockets, settings):
    settings.SUPPORTDESK_LIMIT_CALL_SIGNALS = "3 per minute"
    agent, visitor, call_id, _conversation = await in_call(sockets, personas)

    for _ in range(4):
        await agent.send_json_to({"type": "call.signal", "call_id": call_id, "data": CANDIDATE})

    assert (await ws.receive_until(agent, "error"))["code"] == "rate_limited"
    seen = await ws.frames_before_pong(visitor)
    assert len([f for f in seen if f["type"] == "call.signal"]) == 3


async def test_a_signal_from_a_tab_that_does_not_hold_the_call_is_refused(personas, sockets):
    _agent, _visitor, call_id, _conversation = await in_call(sockets, personas)
    other_visitor_tab = await visitor_socket(sockets, personas, personas.v1)

    await other_visitor_tab.send_json_to({"type": "call.signal", "call_id": call_id, "data": OFFER})

    assert (await ws.receive_until(other_visitor_tab, "error"))["code"] == "not_found"
    # ... and a second tab cannot answer a call already answered.
    await other_visitor_tab.send_json_to({"type": "call.accept", "call_id": call_id})
    assert (await ws.receive_until(other_visitor_tab, "error"))["code"] == "not_found"


async def call_frames(socket) -> list[dict]:
    return [f for f in await ws.frames_before_pong(socket) if f["type"].startswith("call.")]


async def test_the_visitors_only_tab_closing_ends_a_ringing_call_for_the_agent(personas, sockets):
    agent, visitor, invited, conversation = await ringing(sockets, personas)

    await visitor.disconnect(timeout=ws.TIMEOUT)

    ended = await ws.receive_until(agent, "call.ended")
    assert ended == {
        "type": "call.ended",
        "conversation": conversation,
        "call_id": invited["call_id"],
        "reason": "disconnected",
    }
    assert (await system_lines(conversation))[-1] == "The call ended before it was answered."
    assert await ws.db(VisitorSocket.objects.count) == 0


async def test_a_ringing_call_keeps_ringing_while_the_visitor_has_another_tab(personas, sockets):
    agent, visitor, invited, _conversation = await ringing(sockets, personas)
    other_tab = await visitor_socket(sockets, personas, personas.v1)

    # `disconnect` returns once the socket's close has run (its row deleted, the check).
    await visitor.disconnect(timeout=ws.TIMEOUT)

    assert await call_frames(agent) == []
    assert await ws.db(Call.objects.filter(pk=invited["call_id"], status="ringing").exists)
    await other_tab.disconnect(timeout=ws.TIMEOUT)
    assert (await ws.receive_until(agent, "call.ended"))["reason"] == "disconnected"


async def test_a_tab_opened_while_a_call_rings_gets_the_invitation_right_after_ready(
    personas, sockets
):
    _agent, _visitor, invited, _conversation = await ringing(sockets, personas)

    new_tab = await sockets.visitor_connected()
    await new_tab.send_json_to(ws.hello(personas.acme.key, personas.token(personas.v1)))
    shown, before = await ws.receive_frames_until(new_tab, "call.invited")

    assert [f["type"] for f in before] == ["ready"]
    assert shown == invited
    # The invitation's broadcast, arriving late (the race with `ready`), is not shown twice.
    await get_channel_layer().group_send(
        groups.visitor_group(personas.v1.id), groups.frame_event(invited)
    )
    assert await call_frames(new_tab) == []
    # ... and the tab may answer it.
    await new_tab.send_json_to({"type": "call.accept", "call_id": invited["call_id"]})
    assert (await ws.receive_until(new_tab, "call.accepted"))["call_id"] == invited["call_id"]


async def test_another_visitors_tab_neither_sees_the_call_nor_keeps_it_ringing(personas, sockets):
    agent, visitor, invited, _conversation = await ringing(sockets, personas)
    await open_chat(personas.v2)

    stranger = await visitor_socket(sockets, personas, personas.v2)

    assert await call_frames(stranger) == []
    await visitor.disconnect(timeout=ws.TIMEOUT)
    ended = await ws.receive_until(agent, "call.ended")
    assert (ended["call_id"], ended["reason"]) == (invited["call_id"], "disconnected")
    assert await call_frames(stranger) == []


async def rows_left(expected: int) -> None:
    """Wait until `expected` visitor sockets are counted, then for the close's check
    that deleted the row to finish: a closed socket's row goes when its grace ends, a
    background task announced to no client."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ws.TIMEOUT
    while (count := await ws.db(VisitorSocket.objects.count)) != expected:
        assert loop.time() < deadline, f"{count} visitor sockets counted, not {expected}"
        await asyncio.sleep(0.02)
    await asyncio.wait_for(asyncio.gather(*transport_socket._background), ws.TIMEOUT)


async def test_a_reload_within_the_grace_is_shown_the_call_which_rings_on(
    personas, sockets, settings
):
    settings.SUPPORTDESK_VISITOR_SOCKET_GRACE = 2
    agent, visitor, invited, _conversation = await ringing(sockets, personas)

    # The only tab reloads: its socket closes, the next page's opens.
    await visitor.disconnect(timeout=ws.TIMEOUT)
    reloaded = await sockets.visitor_connected()
    await reloaded.send_json_to(ws.hello(personas.acme.key, personas.token(personas.v1)))
    assert await ws.receive_until(reloaded, "call.invited") == invited
    await rows_left(1)  # the old socket's grace is over: the reloaded page counted

    assert await call_frames(agent) == []
    assert await ws.db(Call.objects.filter(pk=invited["call_id"], status="ringing").exists)
    # Closed for good: the call ends once the grace is over, not at the timeout.
    await reloaded.disconnect(timeout=ws.TIMEOUT)
    ended = await ws.receive_until(agent, "call.ended", timeout=ws.TIMEOUT + 2)
    assert ended["reason"] == "disconnected"
