"""How a socket recovers from the faults the chaos tests inject, one mechanism at a time
and in-process (fast, so `make test` runs them too): a retry rings the doorbell again
and every socket shows a seq once; a broken Redis subscription makes the sockets
resync; an outage at connect or `hello` closes with 4503; the API answers 503 JSON;
Daphne drops a client that stops reading and sends frames longer than its inbound
limit."""

from types import SimpleNamespace

import pytest
import redis.exceptions
from django.conf import settings
from django.db import OperationalError
from django.test import Client

from chat import protocol, selectors
from chat.conversations import messages, sending, sessions
from chat.conversations.actors import Actor
from chat.models import Message
from chat.realtime import delivery, groups, layer, outbox, resume
from supportdesk import daphne_sending
from tests import ws

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]


async def chat_with_alice(sockets, personas):
    """v1 writes first and alice (dashboard open) gets the chat; (v1, alice, conversation)."""
    alice, _ready = await sockets.agent(personas.alice)
    tab, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    await tab.send_json_to({"type": "message.send", "client_msg_id": "first", "body": "Hi"})
    conversation = (await ws.receive_until(tab, "message.ack"))["conversation"]
    await ws.receive_until(alice, "conversation.assigned")
    return tab, alice, conversation


def stored_without_broadcast(visitor_id: int, **kwargs) -> messages.PostedMessage:
    """Store a message the way a worker does, then drop its broadcasts: a worker killed
    between the commit and `group_send`."""
    with outbox.Outbox():
        return sending.post_message(Actor.visitor(visitor_id), **kwargs)


# --- retries ring again; a seq is shown once ------------------------------------------


async def test_retry_of_a_message_whose_broadcast_died_with_its_worker_reaches_the_agent_once(
    personas, sockets
):
    tab, alice, conversation = await chat_with_alice(sockets, personas)
    lost = await ws.db(
        stored_without_broadcast, visitor_id=personas.v1.id, client_msg_id="lost", body="Hello?"
    )
    assert lost.created
    assert [f for f in await ws.frames_before_pong(alice) if f["type"] == "message"] == []

    # The visitor never got an ack, so it sends again (on any worker): same ack, and
    # this time alice hears of it, once, however often the retry comes.
    for _ in range(3):
        await tab.send_json_to({"type": "message.send", "client_msg_id": "lost", "body": "x"})
        ack = await ws.receive_until(tab, "message.ack")
        assert (ack["conversation"], ack["seq"]) == (conversation, lost.message["seq"])
    frames = [f for f in await ws.frames_before_pong(alice) if f["type"] == "message"]
    assert [(f["seq"], f["client_msg_id"]) for f in frames] == [(lost.message["seq"], "lost")]
    assert await ws.db(Message.objects.filter(client_msg_id="lost").count) == 1


async def test_a_tab_that_already_showed_a_message_does_not_get_it_again_when_it_is_retried(
    personas, sockets
):
    tab, alice, _conversation = await chat_with_alice(sockets, personas)
    other_tab, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    await tab.send_json_to({"type": "message.send", "client_msg_id": "once", "body": "Order?"})
    await ws.receive_until(tab, "message.ack")
    await ws.receive_until(other_tab, "message")
    await ws.receive_until(alice, "message")

    await tab.send_json_to({"type": "message.send", "client_msg_id": "once", "body": "Order?"})
    await ws.receive_until(tab, "message.ack")

    for socket in (other_tab, alice):
        assert [f for f in await ws.frames_before_pong(socket) if f["type"] == "message"] == []


async def test_agent_sync_counts_as_shown_so_a_later_ring_of_the_same_seq_is_dropped(
    personas, sockets
):
    tab, alice, conversation = await chat_with_alice(sockets, personas)
    lost = await ws.db(
        stored_without_broadcast, visitor_id=personas.v1.id, client_msg_id="gap", body="Hm?"
    )
    await alice.send_json_to({"type": "sync", "conversation": conversation, "after_seq": 1})
    sync = await ws.receive_until(alice, "sync")
    assert [m["seq"] for m in sync["messages"]] == [lost.message["seq"]]

    await tab.send_json_to({"type": "message.send", "client_msg_id": "gap", "body": "Hm?"})
    await ws.receive_until(tab, "message.ack")
    assert [f for f in await ws.frames_before_pong(alice) if f["type"] == "message"] == []


async def test_a_lost_broadcast_is_filled_in_before_the_next_message_on_every_socket(
    personas, sockets
):
    tab, alice, _conversation = await chat_with_alice(sockets, personas)
    other_tab, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    lost = await ws.db(
        stored_without_broadcast, visitor_id=personas.v1.id, client_msg_id="lost", body="1?"
    )

    await tab.send_json_to({"type": "message.send", "client_msg_id": "next", "body": "2?"})
    ack, before_ack = await ws.receive_frames_until(tab, "message.ack")

    assert ack["seq"] == lost.message["seq"] + 1
    for socket in (alice, other_tab):
        # "next" waits for "lost" (delivery.GAP_WAIT), which then comes from the database.
        frames = [await ws.receive_until(socket, "message") for _ in range(2)]
        assert [(f["seq"], f["client_msg_id"]) for f in frames] == [
            (lost.message["seq"], "lost"),
            (ack["seq"], "next"),
        ]
    # The sending tab is shown the lost message too, just before its own ack.
    assert [f["seq"] for f in [*before_ack, ack] if f["type"] in ("message", "message.ack")] == [
        lost.message["seq"],
        ack["seq"],
    ]


async def test_a_message_that_overtakes_an_earlier_one_waits_for_it_without_a_query(
    personas, sockets, monkeypatch
):
    _tab, alice, _conversation = await chat_with_alice(sockets, personas)
    first = await ws.db(
        stored_without_broadcast, visitor_id=personas.v1.id, client_msg_id="a", body="1?"
    )
    second = await ws.db(
        stored_without_broadcast, visitor_id=personas.v1.id, client_msg_id="b", body="2?"
    )
    gap_queries = []
    monkeypatch.setattr(selectors, "messages_between", lambda *args: gap_queries.append(args) or [])

    # Two workers' broadcasts reach alice's worker in the wrong order.
    for posted in (second, first):
        frame = {"type": "message", **posted.message}
        await outbox.flush([(groups.agent_group(personas.alice.id), groups.frame_event(frame))])

    frames = [await ws.receive_until(alice, "message") for _ in range(2)]
    assert [f["client_msg_id"] for f in frames] == ["a", "b"]
    assert gap_queries == []
    assert [f for f in await ws.frames_before_pong(alice) if f["type"] == "message"] == []


def test_shown_seqs_remember_each_seq_once_and_stay_small_past_a_gap():
    shown = delivery.ShownSeqs(through=3)

    assert [shown.add(seq) for seq in (2, 4, 4, 6, 5, 6)] == [False, True, False, True, True, False]
    assert (shown.through, shown.above) == (6, set())
    for seq in range(8, 8 + delivery.ShownSeqs.MAX_ABOVE + 1):  # 7 never comes
        shown.add(seq)
    assert len(shown.above) <= delivery.ShownSeqs.MAX_ABOVE
    assert not shown.add(8 + delivery.ShownSeqs.MAX_ABOVE)


# --- a broken Redis subscription makes sockets resync ---------------------------------


async def test_restored_subscription_closes_every_joined_socket_with_4503_to_resync(
    personas, sockets
):
    tab, alice, _conversation = await chat_with_alice(sockets, personas)
    not_yet_hello = await sockets.visitor_connected()

    layer.subscription_restored()

    for socket in (tab, alice):
        code, _frames = await ws.receive_close(socket)
        assert code == protocol.CLOSE_UNAVAILABLE
    # A socket that joined nothing missed nothing: it stays.
    await not_yet_hello.send_json_to(
        ws.hello(personas.acme.key, personas.token(personas.v2), last_seq=0)
    )
    assert (await ws.receive_until(not_yet_hello, "ready"))["type"] == "ready"


# --- an outage at connect or hello: close 4503, nothing left behind --------------------


def database_down(*args, **kwargs):
    raise OperationalError("connection refused")


async def test_visitor_hello_while_the_database_is_down_closes_with_4503_and_leaves_no_group(
    personas, sockets, monkeypatch
):
    monkeypatch.setattr(resume, "visitor_ready", database_down)  # after joining groups
    tab = await sockets.visitor_connected()

    await tab.send_json_to(ws.hello(personas.acme.key, personas.token(personas.v1), last_seq=0))

    code, frames = await ws.receive_close(tab)
    assert (code, frames) == (protocol.CLOSE_UNAVAILABLE, [])
    assert groups.visitor_group(personas.v1.id) not in _layer_groups()


async def test_agent_connect_while_the_database_is_down_closes_with_4503(
    personas, sockets, monkeypatch
):
    monkeypatch.setattr(resume, "agent_ready", database_down)
    cookie = await ws.session_cookie(personas.alice.user)
    alice = sockets.track(ws.agent_communicator(cookie))

    connected, _ = await alice.connect(timeout=ws.TIMEOUT)

    assert connected
    code, frames = await ws.receive_close(alice)
    assert (code, frames) == (protocol.CLOSE_UNAVAILABLE, [])
    assert _layer_groups() == set()


async def test_a_socket_redis_refuses_a_channel_is_accepted_and_closed_with_4503(
    personas, sockets, monkeypatch
):
    from channels.layers import InMemoryChannelLayer

    async def redis_down(self, prefix="specific."):
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379.")

    monkeypatch.setattr(InMemoryChannelLayer, "new_channel", redis_down)
    tab = sockets.track(ws.visitor_communicator())

    connected, _ = await tab.connect(timeout=ws.TIMEOUT)

    assert connected
    code, _frames = await ws.receive_close(tab)
    assert code == protocol.CLOSE_UNAVAILABLE


def _layer_groups() -> set[str]:
    """Groups of the in-memory layer that still have members."""
    from channels.layers import get_channel_layer

    return {name for name, members in get_channel_layer().groups.items() if members}


def test_visitor_session_api_answers_503_json_while_the_database_is_down(personas, monkeypatch):
    monkeypatch.setattr(sessions, "create_visitor_session", database_down)

    response = Client().post(
        "/api/v1/visitor-sessions",
        {"site_key": personas.acme.key},
        content_type="application/json",
        HTTP_ORIGIN="https://acme.example",
    )

    assert (response.status_code, response["Content-Type"]) == (503, "application/json")
    assert response.json()["error"] == "unavailable"


# --- Daphne: a client that stops reading, and frames past the inbound limit -------------


class FakeTransport:
    def __init__(self, unsent: int) -> None:
        self.dataBuffer = b"x" * unsent
        self.offset = 0
        self._tempDataLen = 0
        self.aborted = False

    def abortConnection(self) -> None:  # noqa: N802 - Twisted's name
        self.aborted = True


def fake_protocol(unsent: int):
    """Just enough of Daphne's WebSocketProtocol for `serverSend`."""
    sent = []
    protocol = SimpleNamespace(
        transport=FakeTransport(unsent),
        client_addr=["127.0.0.1", 5000],
        maxMessagePayloadSize=131072,
        state=1,
        STATE_CONNECTING=0,
    )
    protocol.sendMessage = lambda payload, binary: sent.append(
        (len(payload), protocol.maxMessagePayloadSize)
    )
    return protocol, sent


@pytest.fixture
def send_buffer_limit():
    from daphne.ws_protocol import WebSocketProtocol

    daphne_sending.patch_daphne_sending(1000)
    yield WebSocketProtocol
    daphne_sending.patch_daphne_sending(settings.SUPPORTDESK_WS_SEND_BUFFER)


def test_daphne_drops_a_client_with_more_unsent_bytes_than_the_limit(send_buffer_limit):
    behind, sent_behind = fake_protocol(unsent=1001)
    keeping_up, sent = fake_protocol(unsent=1000)
    for fake in (behind, keeping_up):
        fake.unsent_limit = send_buffer_limit.unsent_limit
        fake.dropped_as_slow = False

    send_buffer_limit.serverSend(behind, "frame")
    send_buffer_limit.serverSend(behind, "frame")
    send_buffer_limit.serverSend(keeping_up, "frame")

    assert (behind.transport.aborted, sent_behind) == (True, [])
    assert (keeping_up.transport.aborted, [n for n, _ in sent]) == (False, [5])


def test_daphne_sends_a_frame_longer_than_its_inbound_message_limit(send_buffer_limit):
    protocol, sent = fake_protocol(unsent=0)
    protocol.unsent_limit = send_buffer_limit.unsent_limit
    protocol.dropped_as_slow = False

    send_buffer_limit.serverSend(protocol, "x" * 200_000)

    # Sent with the limit lifted, and the limit back in place for what clients send.
    assert sent == [(200_000, 0)]
    assert protocol.maxMessagePayloadSize == 131072
