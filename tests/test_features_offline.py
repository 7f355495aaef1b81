"""Offline form: with nobody online the widget is told so (`ready.agents_online`), and
the visitor's name, email and question become a queued conversation agents see, mailed
to the site's agents."""

import json

import pytest
from django.core import mail

from agents.models import AgentProfile
from chat.conversations import sending
from chat.conversations.actors import Actor
from chat.models import Conversation, Message, Site, Visitor
from tests import ws

URL = "/api/v1/offline-messages"


def everyone_away() -> None:
    AgentProfile.objects.update(status=AgentProfile.Status.AWAY)


def give_emails(personas) -> None:
    for agent, address in (
        (personas.alice, "alice@acme.example"),
        (personas.bob, "bob@acme.example"),
    ):
        agent.user.email = address
        agent.user.save(update_fields=["email"])


def leave(client, site_key, *, origin=ws.ACME_ORIGIN, **fields):
    payload = {
        "site_key": site_key,
        "name": "Dana",
        "email": "dana@example.com",
        "question": "Do you ship to Norway?",
        **fields,
    }
    headers = {"HTTP_ORIGIN": origin} if origin else {}
    return client.post(URL, json.dumps(payload), content_type="application/json", **headers)


@pytest.mark.django_db(transaction=True)
def test_offline_message_opens_a_queued_chat_with_the_question_and_mails_the_agents(
    client, personas
):
    everyone_away()
    give_emails(personas)

    response = leave(client, personas.acme.key, visitor_token=personas.token(personas.v1))

    assert response.status_code == 201
    body = response.json()
    chat = Conversation.objects.get(pk=body["conversation"])
    assert (chat.status, chat.agent_id, chat.visitor_id) == ("queued", None, personas.v1.id)
    assert list(chat.messages.values_list("sender", "body")) == [
        ("visitor", "Do you ship to Norway?")
    ]
    visitor = Visitor.objects.get(pk=personas.v1.id)
    assert (visitor.name, visitor.email) == ("Dana", "dana@example.com")
    assert body["visitor_token"] == personas.token(personas.v1)

    [sent] = mail.outbox
    assert sorted(sent.to) == ["alice@acme.example", "bob@acme.example"]
    assert sent.reply_to == ["dana@example.com"]
    assert "Dana" in sent.subject
    assert "Do you ship to Norway?" in sent.body


@pytest.mark.django_db(transaction=True)
def test_offline_message_without_a_token_makes_a_new_visitor(client, personas):
    everyone_away()
    before = Visitor.objects.count()
    response = leave(client, personas.acme.key)
    assert response.status_code == 201
    assert Visitor.objects.count() == before + 1
    new = Visitor.objects.get(conversations__id=response.json()["conversation"])
    assert new.email == "dana@example.com"


@pytest.mark.django_db(transaction=True)
def test_agents_of_other_sites_are_not_mailed(client, personas):
    everyone_away()
    give_emails(personas)
    other = Site.objects.create(name="other", allowed_origins=["https://other.example"])
    personas.bob.sites.add(other)

    leave(client, personas.acme.key)

    [sent] = mail.outbox
    assert sent.to == ["alice@acme.example"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields",
    [
        {"name": ""},
        {"email": "not-an-address"},
        {"question": "   "},
        {"question": "x" * 10_001},
        {"name": 42},
    ],
)
def test_incomplete_offline_forms_are_refused_and_store_nothing(client, personas, fields):
    response = leave(client, personas.acme.key, **fields)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert not Message.objects.exists()
    assert mail.outbox == []


@pytest.mark.django_db
def test_offline_form_from_a_foreign_origin_is_forbidden(client, personas):
    response = leave(client, personas.acme.key, origin=ws.FOREIGN_ORIGIN)
    assert response.status_code == 403
    assert not Message.objects.exists()
    assert mail.outbox == []


@pytest.mark.django_db
def test_offline_form_for_an_unknown_site_is_not_found(client, personas):
    assert leave(client, "no-such-site").status_code == 404


# --- ready tells the widget whether anyone is there ------------------------------


@pytest.mark.django_db(transaction=True)
async def test_visitor_ready_says_whether_agents_are_online(personas, sockets):
    _socket, ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    assert ready["agents_online"] is True

    await ws.db(everyone_away)
    _socket, ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    assert ready["agents_online"] is False


@pytest.mark.django_db(transaction=True)
async def test_busy_agents_still_count_as_online(personas, sockets):
    for visitor in (personas.v1, personas.v2, personas.v3):  # alice 2 + bob 1: all full
        await ws.db(open_chat, visitor)
    _socket, ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    assert ready["agents_online"] is True


def open_chat(visitor) -> None:
    sending.post_message(Actor.visitor(visitor.id), client_msg_id="c-1", body="Hello")


@pytest.mark.django_db(transaction=True)
async def test_offline_question_shows_on_the_visitors_open_socket(personas, sockets, client):
    await ws.db(everyone_away)
    socket, ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    assert ready["agents_online"] is False

    response = await ws.db(
        leave, client, personas.acme.key, visitor_token=personas.token(personas.v1)
    )

    assert response.status_code == 201
    message = await ws.receive_until(socket, "message")
    assert (message["sender"], message["body"]) == ("visitor", "Do you ship to Norway?")
    queued = await ws.receive_until(socket, "conversation.queued")
    assert queued["position"] == 1


@pytest.mark.django_db(transaction=True)
def test_the_mail_to_agents_of_a_german_site_is_in_german(client, personas):
    everyone_away()
    give_emails(personas)
    Site.objects.filter(pk=personas.acme.pk).update(widget_language="de")

    assert leave(client, personas.acme.key).status_code == 201

    [sent] = mail.outbox
    assert sent.subject == "[acme] Offline-Nachricht von Dana"
    assert "Dana <dana@example.com> hat auf acme eine Nachricht hinterlassen" in sent.body
    assert "Do you ship to Norway?" in sent.body


@pytest.mark.django_db(transaction=True)
def test_a_french_visitor_is_told_in_french_what_the_form_lacks(client, personas):
    response = client.post(
        URL,
        json.dumps({"site_key": personas.acme.key, "name": "Dana", "email": "x", "question": "?"}),
        content_type="application/json",
        HTTP_ORIGIN=ws.ACME_ORIGIN,
        HTTP_ACCEPT_LANGUAGE="fr",
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "bad_request",
        "detail": "Veuillez indiquer une adresse e-mail valide.",
    }
