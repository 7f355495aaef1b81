"""An agent with many chats: a send waiting on the database holds up neither the agent's
other chats nor what reaches the agent meanwhile, while the sends of one chat keep
their order (chat/transport/lanes.py)."""

import asyncio
import threading

import pytest

from chat.conversations import sending
from chat.models import Message
from tests import ws
from tests.test_consumers_agent import of_type, open_chat, send, set_away, visitor_socket

pytestmark = pytest.mark.django_db(transaction=True)


class HeldSends:
    """Agent sends whose client_msg_id starts with "held" wait inside the service until
    `release()`: on the database thread, or on the event loop where the everyday send
    runs there (PostgreSQL, chat/store/loop.py)."""

    def __init__(self, monkeypatch) -> None:
        self.released = threading.Event()
        self.waiting = threading.Semaphore(0)
        real = sending.post_message
        real_on_loop = sending.post_message_on_loop

        def post_message(*args, **kwargs):
            if kwargs["client_msg_id"].startswith("held"):
                self.waiting.release()
                assert self.released.wait(ws.TIMEOUT)
            return real(*args, **kwargs)

        async def post_message_on_loop(*args, **kwargs):
            if kwargs["client_msg_id"].startswith("held"):
                self.waiting.release()
                assert await asyncio.to_thread(self.released.wait, ws.TIMEOUT)
            return await real_on_loop(*args, **kwargs)

        monkeypatch.setattr(sending, "post_message", post_message)
        monkeypatch.setattr(sending, "post_message_on_loop", post_message_on_loop)

    async def started(self) -> None:
        assert await asyncio.to_thread(self.waiting.acquire, timeout=ws.TIMEOUT)

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def held_sends(monkeypatch):
    held = HeldSends(monkeypatch)
    yield held
    held.release()  # never leave a database thread waiting


async def alice_with_two_chats(sockets, personas):
    await set_away(personas.bob)
    first, second = await open_chat(personas.v1), await open_chat(personas.v2)
    agent, _ready = await sockets.agent(personas.alice)
    return agent, first, second


async def stored_bodies(conversation_id: int) -> list[str]:
    return await ws.db(
        lambda: list(
            Message.objects.filter(conversation_id=conversation_id)
            .order_by("seq")
            .values_list("body", flat=True)
        )
    )


async def test_a_send_waiting_on_the_database_holds_up_neither_other_chats_nor_incoming_messages(
    personas, sockets, held_sends
):
    agent, first, second = await alice_with_two_chats(sockets, personas)
    visitor, _ready = await visitor_socket(sockets, personas, personas.v2)
    await agent.send_json_to(send(first, "Let me look that up", "held-1"))
    await held_sends.started()

    # The other chat's visitor writes, and the agent answers there, while the first
    # send is still waiting.
    await visitor.send_json_to({"type": "message.send", "client_msg_id": "v", "body": "Hi?"})
    incoming = await ws.receive_until(agent, "message")
    await agent.send_json_to(send(second, "Hello!", "quick"))
    quick_ack = await ws.receive_until(agent, "message.ack")

    assert (incoming["conversation"], incoming["body"]) == (second, "Hi?")
    assert (quick_ack["conversation"], quick_ack["client_msg_id"]) == (second, "quick")
    held_sends.release()
    held_ack = await ws.receive_until(agent, "message.ack")
    assert (held_ack["conversation"], held_ack["client_msg_id"]) == (first, "held-1")
    assert await stored_bodies(first) == ["Hello", "Let me look that up"]


async def test_sends_in_one_chat_keep_their_order_behind_one_that_waits(
    personas, sockets, held_sends
):
    agent, first, _second = await alice_with_two_chats(sockets, personas)
    await agent.send_json_to(send(first, "One moment", "held-1"))
    await held_sends.started()
    await agent.send_json_to(send(first, "Found it", "after"))

    # Nothing about the chat gets ahead of the send that waits.
    assert of_type(await ws.frames_before_pong(agent), "message.ack") == []
    held_sends.release()
    acks = [await ws.receive_until(agent, "message.ack") for _ in range(2)]

    assert [(a["client_msg_id"], a["seq"]) for a in acks] == [("held-1", 2), ("after", 3)]
    assert await stored_bodies(first) == ["Hello", "One moment", "Found it"]


async def test_a_send_in_flight_when_the_agent_leaves_is_still_stored_and_delivered(
    personas, sockets, held_sends
):
    agent, first, _second = await alice_with_two_chats(sockets, personas)
    visitor, _ready = await visitor_socket(sockets, personas, personas.v1)
    await agent.send_json_to(send(first, "Bye for now", "held-1"))
    await held_sends.started()

    leaving = asyncio.ensure_future(agent.disconnect(timeout=ws.TIMEOUT))
    held_sends.release()
    await leaving

    delivered = await ws.receive_until(visitor, "message")
    assert (delivered["seq"], delivered["body"]) == (2, "Bye for now")
    assert await stored_bodies(first) == ["Hello", "Bye for now"]


async def test_a_frame_whose_handling_crashes_fails_the_socket_as_before(
    personas, sockets, monkeypatch
):
    agent, first, _second = await alice_with_two_chats(sockets, personas)

    def broken(**kwargs):
        raise RuntimeError("a bug in a service")

    monkeypatch.setattr(sending, "relay_typing", broken)
    await agent.send_json_to({"type": "typing", "conversation": first, "active": True})

    # The application fails with the handler's exception: daphne logs it and closes
    # the socket with 1011.
    with pytest.raises(RuntimeError, match="a bug in a service"):
        while True:
            await agent.receive_output(timeout=ws.TIMEOUT)
