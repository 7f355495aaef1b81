"""Internal notes: agents write them on a chat, agents see them, the visitor never does
(not live, not in `ready`, and the visitor's seq stream keeps no gap for them)."""

import pytest

from chat import errors
from chat.conversations import closing, sending
from chat.conversations.actors import Actor
from chat.models import Conversation, Note
from chat.realtime import groups
from tests import ws

pytestmark = pytest.mark.django_db(transaction=True)


def open_chat(visitor, body="My parcel is late") -> Conversation:
    posted = sending.post_message(
        Actor.visitor(visitor.id), client_msg_id=f"open-{visitor.id}", body=body
    )
    return Conversation.objects.get(pk=posted.message["conversation"])


# --- services -------------------------------------------------------------------


def test_note_reaches_the_agent_group_and_never_the_visitor_group(personas, capture_broadcasts):
    chat = open_chat(personas.v1)
    assert chat.agent_id == personas.alice.id
    capture_broadcasts.clear()

    posted = sending.post_note(
        agent_id=personas.alice.id,
        conversation_id=chat.id,
        client_msg_id="n-1",
        body="Refund already issued, ticket 4411",
    )

    assert posted.created
    to_alice = capture_broadcasts.frames(groups.agent_group(personas.alice.id), "note")
    assert [n["body"] for n in to_alice] == ["Refund already issued, ticket 4411"]
    assert to_alice[0]["author"] == "Alice"
    assert to_alice[0]["after_seq"] == 1
    assert capture_broadcasts.frames(groups.visitor_group(personas.v1.id)) == []


def test_note_takes_no_seq_so_the_visitors_next_message_follows_without_a_gap(personas):
    chat = open_chat(personas.v1)
    sending.post_note(
        agent_id=personas.alice.id, conversation_id=chat.id, client_msg_id="n-1", body="VIP"
    )
    reply = sending.post_message(
        Actor.agent(personas.alice.id), conversation_id=chat.id, client_msg_id="a-1", body="Hi!"
    )
    assert reply.message["seq"] == 2


def test_retrying_a_note_with_the_same_client_msg_id_stores_it_once(personas):
    chat = open_chat(personas.v1)
    first = sending.post_note(
        agent_id=personas.alice.id, conversation_id=chat.id, client_msg_id="n-1", body="VIP"
    )
    again = sending.post_note(
        agent_id=personas.alice.id, conversation_id=chat.id, client_msg_id="n-1", body="VIP"
    )
    assert not again.created
    assert again.note["id"] == first.note["id"]
    assert Note.objects.filter(conversation=chat).count() == 1


def test_an_agent_cannot_write_a_note_on_a_colleagues_chat(personas):
    chat = open_chat(personas.v1)
    with pytest.raises(errors.NotFound):
        sending.post_note(
            agent_id=personas.bob.id, conversation_id=chat.id, client_msg_id="n-1", body="hm"
        )
    assert not Note.objects.exists()


def test_a_closed_chat_takes_no_more_notes(personas):
    chat = open_chat(personas.v1)
    closing.close_conversation(Actor.agent(personas.alice.id), conversation_id=chat.id)
    with pytest.raises(errors.ConversationClosed):
        sending.post_note(
            agent_id=personas.alice.id, conversation_id=chat.id, client_msg_id="n-1", body="x"
        )


# --- sockets --------------------------------------------------------------------


def note_frame(conversation_id, body, client_msg_id="n-1") -> dict:
    return {
        "type": "note.send",
        "conversation": conversation_id,
        "client_msg_id": client_msg_id,
        "body": body,
    }


async def test_note_is_acked_shown_on_every_agent_tab_and_never_on_the_visitor_socket(
    personas, sockets
):
    visitor, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    alice, _ = await sockets.agent(personas.alice)
    alice_other_tab, _ = await sockets.agent(personas.alice)
    await visitor.send_json_to(
        {"type": "message.send", "client_msg_id": "c-1", "body": "Where is my parcel?"}
    )
    assigned = await ws.receive_until(alice, "conversation.assigned")
    chat_id = assigned["conversation"]["id"]
    await ws.receive_until(alice_other_tab, "conversation.assigned")

    await alice.send_json_to(note_frame(chat_id, "Customer is a VIP, be generous"))

    ack, before_ack = await ws.receive_frames_until(alice, "note.ack")
    assert ack["conversation"] == chat_id and ack["client_msg_id"] == "n-1"
    own = [f for f in before_ack if f["type"] == "note"] or [await ws.receive_until(alice, "note")]
    assert own[0]["body"] == "Customer is a VIP, be generous"
    other = await ws.receive_until(alice_other_tab, "note")
    assert other["id"] == ack["id"] and other["author"] == "Alice"

    # The agent answers; the visitor gets exactly that answer and nothing of the note.
    await alice.send_json_to(
        {"type": "message.send", "conversation": chat_id, "client_msg_id": "a-1", "body": "Hi!"}
    )
    message = await ws.receive_until(visitor, "message")
    assert message["seq"] == 2 and message["body"] == "Hi!"
    seen = await ws.frames_before_pong(visitor)
    every_frame_text = repr(seen) + repr(message)
    assert "VIP" not in every_frame_text
    assert all(f["type"] != "note" for f in seen)


async def test_visitor_ready_after_reconnect_carries_messages_but_no_note(personas, sockets):
    visitor, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    alice, _ = await sockets.agent(personas.alice)
    await visitor.send_json_to({"type": "message.send", "client_msg_id": "c-1", "body": "Hello"})
    chat_id = (await ws.receive_until(alice, "conversation.assigned"))["conversation"]["id"]
    await alice.send_json_to(note_frame(chat_id, "Secret: fraud check pending"))
    await ws.receive_until(alice, "note.ack")

    _again, ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))

    assert [m["body"] for m in ready["messages"]] == ["Hello"]
    assert ready["conversation"]["last_seq"] == 1
    assert "fraud" not in repr(ready)


async def test_agent_sync_returns_the_notes_with_the_messages(personas, sockets):
    visitor, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    alice, _ = await sockets.agent(personas.alice)
    await visitor.send_json_to({"type": "message.send", "client_msg_id": "c-1", "body": "Hello"})
    chat_id = (await ws.receive_until(alice, "conversation.assigned"))["conversation"]["id"]
    await alice.send_json_to(note_frame(chat_id, "Checked the order: shipped Monday"))
    await ws.receive_until(alice, "note.ack")

    await alice.send_json_to({"type": "sync", "conversation": chat_id, "after_seq": 0})
    reply = await ws.receive_until(alice, "sync")

    assert [m["body"] for m in reply["messages"]] == ["Hello"]
    assert [(n["body"], n["after_seq"]) for n in reply["notes"]] == [
        ("Checked the order: shipped Monday", 1)
    ]


async def test_note_on_someone_elses_chat_is_refused_as_not_found(personas, sockets):
    visitor, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    alice, _ = await sockets.agent(personas.alice)
    bob, _ = await sockets.agent(personas.bob)
    await visitor.send_json_to({"type": "message.send", "client_msg_id": "c-1", "body": "Hello"})
    chat_id = (await ws.receive_until(alice, "conversation.assigned"))["conversation"]["id"]

    await bob.send_json_to(note_frame(chat_id, "peek"))

    error = await ws.receive_until(bob, "error")
    assert error["code"] == "not_found" and error["client_msg_id"] == "n-1"
    assert not await ws.db(Note.objects.exists)


async def test_visitor_socket_cannot_send_notes(personas, sockets):
    visitor, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    await visitor.send_json_to(note_frame(1, "I am an agent, honest"))
    error = await ws.receive_until(visitor, "error")
    assert error["code"] == "bad_frame"
    assert not await ws.db(Note.objects.exists)
