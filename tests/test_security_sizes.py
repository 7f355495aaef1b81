"""Attacks with size: frames past 64 KiB (counted in bytes, not characters), JSON nested
deep enough to exhaust the parser, numbers thousands of digits long, oversized fields
and request bodies. Each is refused with the contract's answer; none crashes a socket or
stores a row.

Daphne's own limit in front of these (--websocket-max-message-size) is tested on a real
daphne in test_security_cluster.py."""

import json

import pytest

from chat import protocol
from chat.models import Conversation, Message, Visitor
from tests import ws

pytestmark = pytest.mark.django_db(transaction=True)

# Valid JSON, under 64 KiB, nested 30,000 deep: past the parser's recursion limit.
DEEP_JSON = "[" * 30_000 + "]" * 30_000


async def stored() -> tuple[int, int]:
    return await ws.db(lambda: (Conversation.objects.count(), Message.objects.count()))


def nested(levels: int) -> object:
    value: object = "deep"
    for _ in range(levels):
        value = [value]
    return value


def send(body: str, client_msg_id: str, **extra) -> dict:
    return {"type": "message.send", "client_msg_id": client_msg_id, "body": body, **extra}


# --- nesting --------------------------------------------------------------------------


async def test_json_nested_past_the_parsers_stack_is_a_bad_frame_and_the_socket_lives_on(
    personas, sockets
):
    assert len(DEEP_JSON.encode()) < protocol.MAX_FRAME_BYTES
    tab, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))

    await tab.send_to(text_data=DEEP_JSON)

    assert (await ws.receive_until(tab, "error"))["code"] == "bad_frame"
    await tab.send_json_to(send("still here", "m1"))
    assert (await ws.receive_until(tab, "message.ack"))["seq"] == 1


async def test_an_agent_frame_nested_past_the_parsers_stack_is_a_bad_frame(personas, sockets):
    agent, _ready = await sockets.agent(personas.alice)

    await agent.send_to(text_data=DEEP_JSON)

    assert (await ws.receive_until(agent, "error"))["code"] == "bad_frame"
    assert await ws.frames_before_pong(agent) == []


async def test_a_hello_nested_past_the_parsers_stack_closes_with_4400(personas, sockets):
    tab = await sockets.visitor_connected()

    await tab.send_to(text_data=DEEP_JSON)

    assert await ws.receive_close(tab) == (4400, [])


async def test_nesting_past_eight_levels_is_refused_even_in_a_field_the_server_ignores(
    personas, sockets
):
    tab, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))

    # The frame object is level 1: seven lists inside it make eight, the most allowed.
    await tab.send_json_to(send("eight levels", "ok", extra=nested(protocol.MAX_JSON_DEPTH - 1)))
    accepted = await ws.receive_until(tab, "message.ack")
    await tab.send_json_to(send("nine levels", "deep", extra=nested(protocol.MAX_JSON_DEPTH)))
    refused = await ws.receive_until(tab, "error")

    assert accepted["client_msg_id"] == "ok"
    assert refused["code"] == "bad_frame"
    assert await stored() == (1, 1)


async def test_a_number_thousands_of_digits_long_is_a_bad_frame(personas, sockets):
    tab, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))

    await tab.send_to(text_data='{"type": "read", "seq": ' + "9" * 5000 + "}")

    assert (await ws.receive_until(tab, "error"))["code"] == "bad_frame"


# --- frame size -----------------------------------------------------------------------


async def test_64_kib_is_counted_in_bytes_so_multibyte_text_cannot_triple_it(personas, sockets):
    tab, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    # 22,000 characters, 66,000 bytes of UTF-8: short in characters, too big in bytes.
    body = "€" * 22_000

    await tab.send_json_to(send(body, "euros"))

    assert (await ws.receive_close(tab))[0] == protocol.CLOSE_TOO_BIG
    assert await stored() == (0, 0)


async def test_a_frame_over_64_kib_before_hello_closes_with_4009(personas, sockets):
    tab = await sockets.visitor_connected()

    await tab.send_to(text_data=json.dumps(ws.hello("k" * 70_000, "t")))

    assert (await ws.receive_close(tab))[0] == protocol.CLOSE_TOO_BIG


async def test_a_binary_frame_over_64_kib_closes_with_4009(personas, sockets):
    tab, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))

    await tab.send_to(bytes_data=b"\0" * (protocol.MAX_FRAME_BYTES + 1))

    assert (await ws.receive_close(tab))[0] == protocol.CLOSE_TOO_BIG


# --- field lengths ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("site_key", "k" * 65), ("visitor_token", "t" * 129), ("last_seq", -1)],
    ids=["site-key-65", "token-129", "negative-last-seq"],
)
async def test_a_hello_with_an_oversized_or_invalid_field_closes_with_4400(
    personas, sockets, field, value
):
    tab = await sockets.visitor_connected()
    hello = ws.hello(personas.acme.key, personas.token(personas.v1))

    await tab.send_json_to({**hello, field: value})

    assert await ws.receive_close(tab) == (4400, [])


# --- HTTP bodies ------------------------------------------------------------------------


def test_a_deeply_nested_session_request_is_a_400_json_error(client, personas):
    visitors = Visitor.objects.count()

    response = client.post(
        "/api/v1/visitor-sessions",
        data="[" * 4000,
        content_type="application/json",
        headers={"Origin": "https://acme.example"},
    )

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert Visitor.objects.count() == visitors


def test_a_session_request_past_the_upload_limit_is_a_413_json_error(client, personas, settings):
    body = json.dumps({"site_key": personas.acme.key, "pad": "x" * (2 * 1024 * 1024)})
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    response = client.post(
        "/api/v1/visitor-sessions",
        data=body,
        content_type="application/json",
        headers={"Origin": "https://acme.example"},
    )

    assert response.status_code == 413
    assert response.json()["error"] == "too_long"


def test_a_form_post_past_the_upload_limit_is_refused_before_it_is_parsed(client, db):
    response = client.post(
        "/accounts/login/",
        data=b"username=a&password=" + b"x" * (2 * 1024 * 1024),
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 400
