"""Attacks on visitor tokens: guessing them, reading them from a stolen database, a URL
or a log, replaying an old one after rotation, and replaying a site's token on another."""

import json
import logging
import re

import pytest
from django.db import connection

from chat.models import Conversation, Site, Visitor, hash_token
from tests import ws

pytestmark = pytest.mark.django_db(transaction=True)

SESSIONS_URL = "/api/v1/visitor-sessions"
ACME_ORIGIN = "https://acme.example"


def post_session(client, payload: dict, origin: str = ACME_ORIGIN):
    return client.post(
        SESSIONS_URL,
        data=json.dumps(payload),
        content_type="application/json",
        headers={"Origin": origin},
    )


async def apost_session(client, payload: dict, origin: str = ACME_ORIGIN):
    return await ws.db(post_session, client, payload, origin)


def every_stored_value() -> str:
    """Every cell of every table, as one string: what a leaked dump would show."""
    cells = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')  # our own table names
            cells.extend(str(cell) for row in cursor.fetchall() for cell in row)
    return "\n".join(cells)


# --- random and stored hashed -----------------------------------------------------------


def test_tokens_are_long_random_and_never_repeat(client, personas):
    tokens = [post_session(client, {"site_key": personas.acme.key}).json() for _ in range(50)]
    tokens = [t["visitor_token"] for t in tokens]

    assert len(set(tokens)) == 50
    # 32 random bytes, URL-safe base64: 256 bits nobody guesses.
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", t) for t in tokens)


def test_a_leaked_database_holds_no_token_only_its_digest(client, personas):
    token = post_session(client, {"site_key": personas.acme.key}).json()["visitor_token"]
    post_session(client, {"site_key": personas.acme.key, "visitor_token": token})

    dump = every_stored_value()

    assert token not in dump
    assert hash_token(token) in dump


# --- never in URLs or logs -------------------------------------------------------------


async def test_a_whole_visitor_session_never_writes_the_token_to_a_log_or_a_url(
    client, personas, sockets, caplog
):
    caplog.set_level(logging.DEBUG)
    created = await apost_session(client, {"site_key": personas.acme.key})
    token = created.json()["visitor_token"]
    again = await apost_session(client, {"site_key": personas.acme.key, "visitor_token": token})
    tab, _ready = await sockets.visitor(personas.acme.key, token)
    _agent, _ready = await sockets.agent(personas.alice)
    await tab.send_json_to({"type": "message.send", "client_msg_id": "m1", "body": "hi"})
    await ws.receive_until(tab, "message.ack")
    await tab.send_json_to({"type": "hello", "site_key": personas.acme.key, "visitor_token": token})
    await ws.receive_until(tab, "error")
    await tab.send_json_to({"type": "conversation.close"})
    await ws.receive_until(tab, "conversation.closed")
    # Refusals log too: a token sent to the wrong site, and a rotated one replayed.
    other = await ws.db(Site.objects.create, name="other", allowed_origins=[ACME_ORIGIN])
    wrong_site = await sockets.visitor_connected()
    await wrong_site.send_json_to(ws.hello(other.key, token))
    await ws.receive_close(wrong_site)
    rotated = await apost_session(
        client, {"site_key": personas.acme.key, "visitor_token": token, "rotate": True}
    )
    await ws.receive_close(tab)
    replay = await sockets.visitor_connected()
    await replay.send_json_to(ws.hello(personas.acme.key, token))
    await ws.receive_close(replay)
    new_token = rotated.json()["visitor_token"]

    logged = "\n".join(
        f"{r.getMessage()} {r.args!r} {r.__dict__.get('request', '')!r}" for r in caplog.records
    )
    assert len(caplog.records) > 5  # the session was logged, just not its token
    assert token not in logged
    assert new_token not in logged
    assert created.json()["ws_url"] == again.json()["ws_url"] == "/ws/visitor/"
    assert token not in created.json()["ws_url"]


# --- rotation ---------------------------------------------------------------------------


def test_rotation_gives_the_same_visitor_a_new_token_and_the_old_one_stops_working(
    client, personas
):
    old = personas.token(personas.v1)

    rotated = post_session(
        client, {"site_key": personas.acme.key, "visitor_token": old, "rotate": True}
    )
    new = rotated.json()["visitor_token"]
    replayed = post_session(client, {"site_key": personas.acme.key, "visitor_token": old})

    assert rotated.status_code == 201
    assert new != old
    assert Visitor.objects.get(token_hash=hash_token(new)) == personas.v1
    assert not Visitor.objects.filter(token_hash=hash_token(old)).exists()
    # The old token is unknown now: it gets a fresh visitor, not v1.
    assert replayed.status_code == 201
    assert replayed.json()["visitor_token"] != old
    assert Visitor.objects.get(token_hash=hash_token(replayed.json()["visitor_token"])) != (
        personas.v1
    )


def test_without_rotate_a_known_token_is_returned_unchanged(client, personas):
    token = personas.token(personas.v1)

    for rotate in ({}, {"rotate": False}):
        response = post_session(
            client, {"site_key": personas.acme.key, "visitor_token": token, **rotate}
        )
        assert response.json()["visitor_token"] == token


@pytest.mark.parametrize("rotate", ["yes", 1, None, [True]])
def test_rotate_must_be_true_or_false(client, personas, rotate):
    token = personas.token(personas.v1)

    response = post_session(
        client, {"site_key": personas.acme.key, "visitor_token": token, "rotate": rotate}
    )

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    personas.v1.refresh_from_db()
    assert personas.v1.token_hash == hash_token(token)


async def test_rotation_closes_sockets_opened_with_the_old_token_and_the_new_one_resumes(
    client, personas, sockets
):
    old = personas.token(personas.v1)
    eavesdropper, _ready = await sockets.visitor(personas.acme.key, old)
    await eavesdropper.send_json_to(
        {"type": "message.send", "client_msg_id": "m1", "body": "my address is ..."}
    )
    await ws.receive_until(eavesdropper, "message.ack")

    rotated = await apost_session(
        client, {"site_key": personas.acme.key, "visitor_token": old, "rotate": True}
    )

    code, _frames = await ws.receive_close(eavesdropper)
    assert code == 4401
    replay = await sockets.visitor_connected()
    await replay.send_json_to(ws.hello(personas.acme.key, old))
    assert (await ws.receive_close(replay))[0] == 4401
    _tab, ready = await sockets.visitor(personas.acme.key, rotated.json()["visitor_token"])
    assert [m["body"] for m in ready["messages"]] == ["my address is ..."]


def test_rotating_another_sites_token_here_rotates_nothing_there(client, personas):
    elsewhere = Site.objects.create(name="elsewhere", allowed_origins=["https://else.example"])
    acme_token = personas.token(personas.v1)

    response = post_session(
        client,
        {"site_key": elsewhere.key, "visitor_token": acme_token, "rotate": True},
        origin="https://else.example",
    )

    assert response.status_code == 201
    personas.v1.refresh_from_db()
    assert personas.v1.token_hash == hash_token(acme_token)
    fresh = Visitor.objects.get(token_hash=hash_token(response.json()["visitor_token"]))
    assert fresh.site == elsewhere
    assert not Conversation.objects.filter(visitor=fresh).exists()
