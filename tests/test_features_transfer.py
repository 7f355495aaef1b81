"""Transfer: an agent hands a chat to a colleague with room (history and notes go with
it, the visitor is told) or back to the front of the queue; a colleague without room
is refused."""

import pytest

from agents.models import AgentProfile
from chat import errors, selectors
from chat.conversations import closing, presence, routing, sending
from chat.conversations.actors import Actor
from chat.models import Conversation, Message
from chat.realtime import groups
from tests import ws

pytestmark = pytest.mark.django_db(transaction=True)


def open_chat(visitor, body="My parcel is late") -> Conversation:
    posted = sending.post_message(
        Actor.visitor(visitor.id), client_msg_id=f"open-{visitor.id}", body=body
    )
    return Conversation.objects.get(pk=posted.message["conversation"])


def set_status(agent, status) -> None:
    AgentProfile.objects.filter(pk=agent.pk).update(status=status)


# --- services -------------------------------------------------------------------


def test_transfer_to_bob_moves_history_and_notes_and_tells_all_three(personas, capture_broadcasts):
    chat = open_chat(personas.v1, "Where is my parcel?")
    assert chat.agent_id == personas.alice.id
    sending.post_note(
        agent_id=personas.alice.id, conversation_id=chat.id, client_msg_id="n-1", body="VIP"
    )
    capture_broadcasts.clear()

    routing.transfer_conversation(
        agent_id=personas.alice.id, conversation_id=chat.id, to_agent_id=personas.bob.id
    )

    chat.refresh_from_db()
    assert (chat.status, chat.agent_id) == ("active", personas.bob.id)
    visitor_group = groups.visitor_group(personas.v1.id)
    [system] = capture_broadcasts.frames(visitor_group, "message")
    assert (system["sender"], system["seq"]) == ("system", 2)
    assert system["body"] == "You are now chatting with Bob."
    [assigned] = capture_broadcasts.frames(visitor_group, "conversation.assigned")
    assert assigned["agent"] == {"display_name": "Bob"}

    [bobs] = capture_broadcasts.frames(groups.agent_group(personas.bob.id), "conversation.assigned")
    assert [m["body"] for m in bobs["conversation"]["messages"]] == [
        "Where is my parcel?",
        "You are now chatting with Bob.",
    ]
    assert [n["body"] for n in bobs["conversation"]["notes"]] == ["VIP"]
    assert bobs["conversation"]["unread"] == 1

    alice_group = groups.agent_group(personas.alice.id)
    [transferred] = capture_broadcasts.frames(alice_group, "conversation.transferred")
    assert transferred == {
        "type": "conversation.transferred",
        "conversation": chat.id,
        "to": {"display_name": "Bob"},
    }
    # Alice no longer hears this chat.
    assert capture_broadcasts.frames(alice_group, "message") == []


def test_transfer_to_a_full_colleague_is_refused_and_changes_nothing(personas):
    chats = [open_chat(v) for v in (personas.v1, personas.v2, personas.v3)]
    agents = {c.id: Conversation.objects.get(pk=c.id).agent_id for c in chats}
    bob_has = [cid for cid, agent in agents.items() if agent == personas.bob.id]
    alice_has = [cid for cid, agent in agents.items() if agent == personas.alice.id]
    assert len(bob_has) == 1 and len(alice_has) == 2  # bob (capacity 1) is full

    with pytest.raises(errors.AgentUnavailable):
        routing.transfer_conversation(
            agent_id=personas.alice.id, conversation_id=alice_has[0], to_agent_id=personas.bob.id
        )

    chat = Conversation.objects.get(pk=alice_has[0])
    assert chat.agent_id == personas.alice.id and chat.last_seq == 1
    assert not Message.objects.filter(sender="system").exists()


def test_transfer_to_an_away_colleague_is_refused(personas):
    chat = open_chat(personas.v1)
    set_status(personas.bob, AgentProfile.Status.AWAY)
    with pytest.raises(errors.AgentUnavailable):
        routing.transfer_conversation(
            agent_id=personas.alice.id, conversation_id=chat.id, to_agent_id=personas.bob.id
        )
    assert Conversation.objects.get(pk=chat.id).agent_id == personas.alice.id


def test_only_the_assigned_agent_can_transfer_a_chat(personas):
    chat = open_chat(personas.v1)
    with pytest.raises(errors.NotFound):
        routing.transfer_conversation(
            agent_id=personas.bob.id, conversation_id=chat.id, to_agent_id=None
        )


def test_chat_sent_back_to_the_queue_goes_ahead_and_to_the_next_free_agent(
    personas, capture_broadcasts
):
    set_status(personas.bob, AgentProfile.Status.AWAY)
    first = open_chat(personas.v1)
    open_chat(personas.v2)
    waiting = open_chat(personas.v3)  # alice is full
    assert waiting.status == "queued"
    set_status(personas.alice, AgentProfile.Status.AWAY)  # she is handing over
    capture_broadcasts.clear()

    routing.transfer_conversation(
        agent_id=personas.alice.id, conversation_id=first.id, to_agent_id=None
    )

    first.refresh_from_db()
    assert (first.status, first.agent_id) == ("queued", None)
    visitor_group = groups.visitor_group(personas.v1.id)
    [system] = capture_broadcasts.frames(visitor_group, "message")
    assert system["body"] == routing.TRANSFERRED_TO_QUEUE_TEXT
    assert capture_broadcasts.frames(visitor_group, "conversation.queued")[-1]["position"] == 1
    assert (
        capture_broadcasts.frames(groups.visitor_group(personas.v3.id), "conversation.queued")[-1][
            "position"
        ]
        == 2
    )
    [transferred] = capture_broadcasts.frames(
        groups.agent_group(personas.alice.id), "conversation.transferred"
    )
    assert transferred["to"] is None

    presence.set_presence(agent_id=personas.bob.id, status="available")
    assert Conversation.objects.get(pk=first.id).agent_id == personas.bob.id


def test_chat_sent_back_to_the_queue_is_not_given_straight_back_to_its_agent(personas):
    AgentProfile.objects.filter(pk=personas.bob.pk).update(capacity=3)
    set_status(personas.alice, AgentProfile.Status.AWAY)
    assert open_chat(personas.v1).agent_id == personas.bob.id
    set_status(personas.alice, AgentProfile.Status.AVAILABLE)
    chat = open_chat(personas.v2)
    assert chat.agent_id == personas.alice.id

    # Once the chat leaves her, alice (no chats) is less loaded than bob (one of
    # three), but she asked for someone else.
    routing.transfer_conversation(
        agent_id=personas.alice.id, conversation_id=chat.id, to_agent_id=None
    )
    chat.refresh_from_db()
    assert (chat.status, chat.agent_id) == ("active", personas.bob.id)


def test_a_handed_back_chat_waits_for_a_busy_colleague_while_others_take_alices_slot(
    personas,
):
    bob_chat = open_chat(personas.v1)
    handed_back = open_chat(personas.v2)
    assert {bob_chat.agent_id, handed_back.agent_id} == {personas.alice.id, personas.bob.id}
    if handed_back.agent_id != personas.alice.id:
        bob_chat, handed_back = handed_back, bob_chat
    # bob (capacity 1) is full; alice hands her chat back to the queue.
    routing.transfer_conversation(
        agent_id=personas.alice.id, conversation_id=handed_back.id, to_agent_id=None
    )
    handed_back.refresh_from_db()
    assert (handed_back.status, handed_back.agent_id) == ("queued", None)

    # A new visitor behind it in the queue gets alice's free slot meanwhile.
    newcomer = open_chat(personas.v3)
    assert (newcomer.status, newcomer.agent_id) == ("active", personas.alice.id)
    handed_back.refresh_from_db()
    assert handed_back.status == "queued"

    # bob's slot frees: the handed-back chat goes to him.
    closing.close_conversation(Actor.agent(personas.bob.id), conversation_id=bob_chat.id)
    handed_back.refresh_from_db()
    assert (handed_back.status, handed_back.agent_id) == ("active", personas.bob.id)
    assert handed_back.handed_back_by_id is None


def test_a_handed_back_chat_returns_to_its_agent_when_nobody_else_is_online(personas):
    set_status(personas.bob, AgentProfile.Status.AWAY)
    chat = open_chat(personas.v1)
    routing.transfer_conversation(
        agent_id=personas.alice.id, conversation_id=chat.id, to_agent_id=None
    )
    chat.refresh_from_db()
    assert (chat.status, chat.agent_id) == ("active", personas.alice.id)


# --- sockets --------------------------------------------------------------------


async def test_transfer_over_the_sockets_reaches_visitor_new_agent_and_old_agent(personas, sockets):
    visitor, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    alice, _ = await sockets.agent(personas.alice)
    bob, _ = await sockets.agent(personas.bob)
    await visitor.send_json_to({"type": "message.send", "client_msg_id": "c-1", "body": "Hi"})
    assigned = await ws.receive_until(alice, "conversation.assigned")
    chat_id = assigned["conversation"]["id"]
    await ws.receive_until(visitor, "conversation.assigned")

    await alice.send_json_to({"type": "agents.list"})
    listing = await ws.receive_until(alice, "agents")
    assert listing["agents"] == [
        {
            "id": personas.bob.id,
            "display_name": "Bob",
            "status": "available",
            "online": True,
            "load": 0,
            "capacity": 1,
        }
    ]

    await alice.send_json_to(
        {"type": "conversation.transfer", "conversation": chat_id, "to_agent": personas.bob.id}
    )

    transferred = await ws.receive_until(alice, "conversation.transferred")
    assert transferred["to"] == {"display_name": "Bob"}
    bobs = await ws.receive_until(bob, "conversation.assigned")
    assert [m["sender"] for m in bobs["conversation"]["messages"]] == ["visitor", "system"]
    system = await ws.receive_until(visitor, "message")
    assert system["body"] == "You are now chatting with Bob." and system["seq"] == 2
    now_with = await ws.receive_until(visitor, "conversation.assigned")
    assert now_with["agent"] == {"display_name": "Bob"}

    # Bob answers; alice may no longer write into it.
    await bob.send_json_to(
        {
            "type": "message.send",
            "conversation": chat_id,
            "client_msg_id": "b-1",
            "body": "Bob here",
        }
    )
    assert (await ws.receive_until(visitor, "message"))["body"] == "Bob here"
    await alice.send_json_to(
        {"type": "message.send", "conversation": chat_id, "client_msg_id": "a-9", "body": "me?"}
    )
    assert (await ws.receive_until(alice, "error"))["code"] == "not_found"


async def test_transfer_to_a_full_agent_answers_agent_unavailable(personas, sockets):
    alice, _ = await sockets.agent(personas.alice)
    for visitor in (personas.v1, personas.v2, personas.v3):
        await ws.run_service(
            sending.post_message,
            Actor.visitor(visitor.id),
            client_msg_id=f"open-{visitor.id}",
            body="Hello",
        )
    alices = await ws.db(
        lambda: list(
            Conversation.objects.filter(agent_id=personas.alice.id).values_list("id", flat=True)
        )
    )

    await alice.send_json_to(
        {"type": "conversation.transfer", "conversation": alices[0], "to_agent": personas.bob.id}
    )

    error = await ws.receive_until(alice, "error")
    assert error["code"] == "agent_unavailable"
    chat = await ws.db(Conversation.objects.get, pk=alices[0])
    assert chat.agent_id == personas.alice.id


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "conversation.transfer", "conversation": 1},
        {"type": "conversation.transfer", "conversation": 1, "to_agent": "bob"},
        {"type": "conversation.transfer", "conversation": 1, "to_agent": True},
    ],
)
async def test_transfer_frame_without_a_valid_to_agent_is_a_bad_frame(personas, sockets, frame):
    alice, _ = await sockets.agent(personas.alice)
    await alice.send_json_to(frame)
    assert (await ws.receive_until(alice, "error"))["code"] == "bad_frame"


# --- who wrote what, after a transfer (v1.1: `agent` on agent messages) -------------


async def test_after_a_transfer_every_copy_of_a_message_names_the_agent_who_wrote_it(
    personas, sockets
):
    visitor, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    alice, _ = await sockets.agent(personas.alice)
    bob, _ = await sockets.agent(personas.bob)
    await visitor.send_json_to({"type": "message.send", "client_msg_id": "v-1", "body": "Hi"})
    chat_id = (await ws.receive_until(alice, "conversation.assigned"))["conversation"]["id"]
    await alice.send_json_to(
        {"type": "message.send", "conversation": chat_id, "client_msg_id": "a-1", "body": "Alice"}
    )
    live = await ws.receive_until(visitor, "message")
    assert live["agent"] == {"id": personas.alice.id, "display_name": "Alice"}

    await alice.send_json_to(
        {"type": "conversation.transfer", "conversation": chat_id, "to_agent": personas.bob.id}
    )
    handed = await ws.receive_until(bob, "conversation.assigned")
    await bob.send_json_to(
        {"type": "message.send", "conversation": chat_id, "client_msg_id": "b-1", "body": "Bob"}
    )
    await ws.receive_until(bob, "message.ack")

    def authors(messages):
        return [(m["sender"], m.get("agent", "-")) for m in messages]

    alices = {"id": personas.alice.id, "display_name": "Alice"}
    bobs = {"id": personas.bob.id, "display_name": "Bob"}
    # Bob's copy of the history: alice's reply is alice's, not his own.
    assert authors(handed["conversation"]["messages"]) == [
        ("visitor", "-"),
        ("agent", alices),
        ("system", "-"),
    ]
    # A visitor who reloads, and bob catching up, see the same authors.
    _back, ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1), last_seq=0)
    await bob.send_json_to({"type": "sync", "conversation": chat_id, "after_seq": 0})
    synced = await ws.receive_until(bob, "sync")
    expected = [("visitor", "-"), ("agent", alices), ("system", "-"), ("agent", bobs)]
    assert authors(ready["messages"]) == authors(synced["messages"]) == expected


def test_a_message_whose_agent_profile_is_gone_names_no_author(personas):
    chat = open_chat(personas.v1)
    sending.post_message(
        Actor.agent(personas.alice.id), conversation_id=chat.id, client_msg_id="a", body="Hi"
    )
    closing.close_conversation(Actor.agent(personas.alice.id), conversation_id=chat.id)
    personas.alice.delete()

    [_first, reply] = selectors.messages_after(chat.id, 0)
    assert (reply["sender"], reply["agent"]) == ("agent", None)
