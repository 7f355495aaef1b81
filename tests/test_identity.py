"""Identity verification: the site's server signs its signed-in user's id, the widget
passes the signature with its visitor session, and a verified user is one visitor on
every device (the same chats), shown to agents as verified. An identity that does not
verify links nothing and is never shown as verified."""

import io
import itertools
import json

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from chat import lifecycle, selectors
from chat.conversations import closing, identity, sending
from chat.conversations.actors import Actor
from chat.models import Conversation, Visitor, hash_token
from chat.realtime import groups
from integrations import keys
from tests import ws

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = "https://acme.example"
_ids = itertools.count(1)


@pytest.fixture
def secret(personas) -> str:
    return identity.rotate_secret(personas.acme)


def session(client, site, token=None, **claimed):
    """POST /api/v1/visitor-sessions from the site's page, with `identity` if given."""
    payload = {"site_key": site.key}
    if token:
        payload["visitor_token"] = token
    if claimed:
        payload["identity"] = claimed
    response = client.post(
        "/api/v1/visitor-sessions",
        json.dumps(payload),
        content_type="application/json",
        headers={"Origin": ORIGIN},
    )
    return response


def signed(secret: str, user_id: str, **more) -> dict:
    return {"user_id": user_id, "user_hash": identity.signature(secret, user_id), **more}


def visitor_of(token: str) -> Visitor:
    row = Visitor.objects.select_related("merged_into").get(token_hash=hash_token(token))
    return row.merged_into or row


def say(visitor: Visitor, body: str = "Hello?") -> dict:
    return sending.post_message(
        Actor.visitor(visitor.pk), client_msg_id=f"m-{next(_ids)}", body=body
    ).message


def test_the_command_prints_the_secret_last_and_rotates_it(personas):
    out = io.StringIO()
    call_command("identity_secret", "--site", personas.acme.key, stdout=out)
    first = out.getvalue().strip().splitlines()[-1]
    call_command("identity_secret", "--site", personas.acme.key, stdout=out)
    same = out.getvalue().strip().splitlines()[-1]
    call_command("identity_secret", "--site", personas.acme.key, "--rotate", stdout=out)
    rotated = out.getvalue().strip().splitlines()[-1]

    assert first == same != rotated
    personas.acme.refresh_from_db()
    assert personas.acme.identity_secret == rotated and len(rotated) == 64


def test_a_signed_user_id_is_verified_and_named(client, personas, secret):
    response = session(
        client, personas.acme, **signed(secret, "u-42", name="Ada", email="ada@example.com")
    )

    assert response.status_code == 201
    assert response.json()["identity"] == "verified"
    visitor = visitor_of(response.json()["visitor_token"])
    assert (visitor.user_id, visitor.name, visitor.email) == ("u-42", "Ada", "ada@example.com")
    context = selectors.visitor_context_dict(visitor)
    assert context["verified"] is True and context["user_id"] == "u-42"


@pytest.mark.parametrize(
    "claimed",
    [
        {"user_id": "u-42", "user_hash": "0" * 64},
        {"user_id": "u-43", "user_hash": "signed for u-42"},
        {"user_id": "u-42"},
        {"name": "Ada", "email": "ada@example.com"},
    ],
    ids=["wrong-hash", "another-users-hash", "no-hash", "no-user-id"],
)
def test_an_identity_that_does_not_verify_links_nothing(client, personas, secret, claimed):
    if claimed.get("user_hash") == "signed for u-42":
        claimed["user_hash"] = identity.signature(secret, "u-42")
    first = session(client, personas.acme, **signed(secret, "u-42"))

    response = session(client, personas.acme, **claimed)

    assert response.json()["identity"] == "unverified"
    visitor = visitor_of(response.json()["visitor_token"])
    assert visitor.pk != visitor_of(first.json()["visitor_token"]).pk
    assert visitor.user_id == "" and visitor.verified_at is None
    assert selectors.visitor_context_dict(visitor)["verified"] is False


def test_a_site_without_a_secret_verifies_no_one(client, personas):
    response = session(
        client, personas.acme, user_id="u-42", user_hash=identity.signature("", "u-42")
    )

    assert response.json()["identity"] == "unverified"


def test_unverified_name_and_email_fill_only_what_is_empty(client, personas, secret):
    token = session(client, personas.acme).json()["visitor_token"]
    Visitor.objects.filter(pk=visitor_of(token).pk).update(name="Dana")

    session(client, personas.acme, token, name="Eve", email="eve@example.com")

    visitor = visitor_of(token)
    assert (visitor.name, visitor.email) == ("Dana", "eve@example.com")


@pytest.mark.parametrize(
    "claimed",
    ["u-42", ["u-42"], {"user_id": 42}, {"user_id": "x" * 201}, {"name": "a\u0000b"}],
)
def test_a_malformed_identity_is_a_400_and_makes_no_visitor(client, personas, claimed):
    payload = {"site_key": personas.acme.key, "identity": claimed}

    response = client.post(
        "/api/v1/visitor-sessions",
        json.dumps(payload),
        content_type="application/json",
        headers={"Origin": ORIGIN},
    )

    assert response.status_code == 400 and response.json()["error"] == "bad_request"
    assert Visitor.objects.count() == 3  # the personas' only


async def test_a_verified_user_sees_their_chat_on_another_device(client, personas, secret, sockets):
    def laptop_chats_and_a_phone_opens():
        laptop = session(client, personas.acme, **signed(secret, "u-42")).json()
        chat = say(visitor_of(laptop["visitor_token"]), "Where is my parcel?")
        phone = session(client, personas.acme).json()["visitor_token"]  # new, anonymous
        return laptop["visitor_token"], phone, chat

    laptop, phone, chat = await sync_to_async(laptop_chats_and_a_phone_opens)()
    before, ready = await sockets.visitor(personas.acme.key, phone)
    assert ready["conversation"] is None  # the phone alone knows nothing yet

    linked = await sync_to_async(
        lambda: session(client, personas.acme, phone, **signed(secret, "u-42")).json()
    )()

    assert linked == {
        "visitor_token": phone,  # the phone keeps its own token
        "ws_url": "/ws/visitor/",
        "identity": "verified",
    }
    # Its socket is told to reconnect; with the same token it is the user now.
    closed = await before.receive_output(timeout=ws.TIMEOUT)
    assert closed == {"type": "websocket.close", "code": 4503}
    tab, ready = await sockets.visitor(personas.acme.key, phone)
    assert ready["conversation"]["id"] == chat["conversation"]
    assert [m["body"] for m in ready["messages"]] == ["Where is my parcel?"]
    await tab.send_json_to(
        {"type": "message.send", "client_msg_id": "p-1", "body": "From my phone"}
    )
    ack = await ws.receive_until(tab, "message.ack")
    assert ack["conversation"] == chat["conversation"]
    same = await sync_to_async(lambda: visitor_of(phone).pk == visitor_of(laptop).pk)()
    assert same


def test_a_devices_earlier_chats_join_the_users(client, personas, secret):
    laptop = session(client, personas.acme, **signed(secret, "u-42")).json()["visitor_token"]
    phone = session(client, personas.acme).json()["visitor_token"]
    earlier = say(visitor_of(phone), "Asked before signing in")
    closing.close_conversation(Actor.system(), conversation_id=earlier["conversation"])

    session(client, personas.acme, phone, **signed(secret, "u-42"))

    record = visitor_of(laptop)
    assert Conversation.objects.get(pk=earlier["conversation"]).visitor_id == record.pk
    assert Visitor.objects.filter(merged_into=record).count() == 1


def test_when_both_devices_had_an_open_chat_the_users_goes_on(
    client, personas, secret, capture_broadcasts
):
    laptop = session(client, personas.acme, **signed(secret, "u-42")).json()["visitor_token"]
    phone = session(client, personas.acme).json()["visitor_token"]
    kept = say(visitor_of(laptop), "On the laptop")
    phone_visitor = visitor_of(phone)
    closed = say(phone_visitor, "On the phone")

    session(client, personas.acme, phone, **signed(secret, "u-42"))

    assert Conversation.objects.get(pk=kept["conversation"]).is_open
    gone = Conversation.objects.get(pk=closed["conversation"])
    assert not gone.is_open and gone.closed_by == "system"
    # The phone's sockets are told to come back (as the user).
    assert any(
        g == groups.visitor_group(phone_visitor.pk) and e["type"] == groups.VISITOR_MOVED_EVENT
        for g, e in capture_broadcasts
    )


def test_the_agent_sees_the_visitor_become_verified(client, personas, secret, capture_broadcasts):
    token = session(client, personas.acme).json()["visitor_token"]
    say(visitor_of(token))  # alice takes it

    session(client, personas.acme, token, **signed(secret, "u-42", name="Ada"))

    (frame,) = capture_broadcasts.frames(groups.agent_group(personas.alice.pk), "visitor.context")
    assert frame["visitor_context"]["verified"] is True
    assert frame["visitor_context"]["name"] == "Ada"


def test_erasing_a_verified_user_stops_every_devices_token(client, personas, secret):
    laptop = session(client, personas.acme, **signed(secret, "u-42")).json()["visitor_token"]
    phone = session(client, personas.acme).json()["visitor_token"]
    session(client, personas.acme, phone, **signed(secret, "u-42"))
    record = visitor_of(laptop)

    (matched,) = lifecycle.visitors_matching(token=phone)
    lifecycle.erase_visitor(visitor_id=matched.pk, actor_label="test", matched_by="token")

    assert matched.pk == record.pk
    for token in (laptop, phone):
        assert not Visitor.objects.filter(token_hash=hash_token(token)).exists()
    record.refresh_from_db()
    assert (record.user_id, record.verified_at, record.attributes) == ("", None, {})


def test_the_rest_api_says_who_is_verified(client, personas, secret):
    token = session(client, personas.acme, **signed(secret, "u-42")).json()["visitor_token"]
    _row, key = keys.create_api_key(site=personas.acme)

    body = client.get(
        f"/api/v1/visitors/{visitor_of(token).pk}", headers={"Authorization": f"Bearer {key}"}
    ).json()

    assert body["verified"] is True and body["user_id"] == "u-42"
