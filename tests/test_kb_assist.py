"""Agent assist (kb/assist/): the three suggestion sources, the visitor's language and the
sentiment flag, on the database; the `assist.suggest` frame over the agent socket."""

import threading

import pytest

from agents.models import CannedResponse
from chat.conversations import closing, sending
from chat.conversations.actors import Actor
from chat.errors import NotFound
from chat.models import Conversation
from kb import importing
from kb.assist import language, sentiment, suggestions
from tests import ws

ARTICLES = [
    importing.Draft(
        "Shipping times and costs",
        "Standard delivery takes 3 to 5 business days and costs $4.95. It is free on "
        "orders over $75.\n\nExpress delivery arrives the next business day.",
        "https://acme.example/help/shipping",
    ),
    importing.Draft(
        "Gift cards", "Gift cards never expire. Check the balance on the gift card page."
    ),
]


def visitor_says(visitor, *bodies: str) -> Conversation:
    for n, body in enumerate(bodies):
        sending.post_message(
            Actor.visitor(visitor.id), client_msg_id=f"v{visitor.id}-{body[:20]}-{n}", body=body
        )
    return Conversation.objects.get(visitor=visitor, status__in=Conversation.OPEN_STATUSES)


def agent_says(agent, conversation: Conversation, body: str) -> None:
    sending.post_message(
        Actor.agent(agent.id),
        conversation_id=conversation.id,
        client_msg_id=f"a-{conversation.id}-{body[:20]}",
        body=body,
    )


@pytest.fixture
def desk(personas, settings):
    settings.SUPPORTDESK_BOT_MODEL = False
    importing.import_articles(personas.acme, ARTICLES, turn_bot_on=False)
    return personas


def test_language_is_named_for_a_sentence_and_not_guessed_for_a_greeting():
    assert language.detect("Hallo, ich habe eine Frage zu meiner Bestellung") == {
        "code": "de",
        "name": "German",
    }
    assert language.detect("Bonjour, ma commande n'est jamais arrivée")["code"] == "fr"
    assert language.detect("hi") is None


def test_an_angry_english_message_is_flagged_and_a_calm_one_is_not():
    assert sentiment.assess("This is ridiculous, worst service ever, I am furious!", "en")[
        "negative"
    ]
    assert not sentiment.assess("Thanks, that helps a lot.", "en")["negative"]


def test_sentiment_is_not_guessed_in_a_language_vader_does_not_read():
    assert sentiment.assess("Das ist eine Katastrophe, ich bin wütend", "de") is None


@pytest.mark.django_db
def test_a_canned_response_sharing_the_questions_words_is_suggested(desk):
    CannedResponse.objects.create(
        owner=None, shortcut="refund", body="Refunds reach your card within 5 days."
    )
    CannedResponse.objects.create(owner=None, shortcut="hello", body="Hello! How can I help?")
    found = suggestions.from_canned(desk.alice.id, "When will my refund reach my card?")
    assert [s.text for s in found] == ["Refunds reach your card within 5 days."]


@pytest.mark.django_db
def test_the_best_article_is_suggested_with_its_extract_and_link(desk):
    found = suggestions.from_articles(desk.acme.id, "how long does standard delivery take")
    assert len(found) == 1
    assert "3 to 5 business days" in found[0].text
    assert found[0].url == "https://acme.example/help/shipping"
    assert suggestions.from_articles(desk.acme.id, "can I bring my dog to your office") == []


@pytest.mark.django_db
def test_the_agents_own_answer_to_a_similar_earlier_question_is_suggested(desk):
    earlier = visitor_says(desk.v1, "Can I change the colour of my order?")
    assert earlier.agent_id == desk.alice.id
    agent_says(desk.alice, earlier, "Yes, write to us within an hour and we change it.")
    closing.close_conversation(actor=Actor.agent(desk.alice.id), conversation_id=earlier.id)
    current = visitor_says(desk.v2, "Hi, how do I change the colour of an order?")
    found = suggestions.from_past_answers(
        desk.alice.id,
        desk.acme.id,
        "how do I change the colour of an order?",
        conversation_id=current.id,
    )
    assert [s.text for s in found] == ["Yes, write to us within an hour and we change it."]
    # Another agent's past answers are theirs.
    assert (
        suggestions.from_past_answers(
            desk.bob.id, desk.acme.id, "change the colour of an order", conversation_id=current.id
        )
        == []
    )


@pytest.mark.django_db
def test_assist_names_language_and_mood_and_suggests_for_the_latest_message(desk):
    current = visitor_says(
        desk.v1,
        "This is ridiculous, I am furious, nobody answers!",
        "How long does standard delivery take?",
    )
    frame = suggestions.assist(agent_id=desk.alice.id, conversation_id=current.id)
    assert frame["language"] == {"code": "en", "name": "English"}
    assert frame["sentiment"]["negative"] is True
    assert frame["suggestions"][0]["source"] == "article"
    with pytest.raises(NotFound):
        suggestions.assist(agent_id=desk.bob.id, conversation_id=current.id)


@pytest.mark.django_db(transaction=True)
async def test_assist_suggest_is_answered_over_the_agent_socket_and_refused_for_anothers_chat(
    desk, sockets
):
    current = await ws.db(visitor_says, desk.v1, "how long does standard delivery take")
    agent, _ready = await sockets.agent(desk.alice)
    await agent.send_json_to({"type": "assist.suggest", "conversation": current.id})
    reply = await ws.receive_until(agent, "assist.suggestions")
    assert reply["conversation"] == current.id
    assert "3 to 5 business days" in reply["suggestions"][0]["text"]
    other, _ready = await sockets.agent(desk.bob)
    await other.send_json_to({"type": "assist.suggest", "conversation": current.id})
    error = await ws.receive_until(other, "error")
    assert error["code"] == "not_found"


@pytest.mark.django_db(transaction=True)
async def test_a_slow_suggestion_never_holds_up_a_send_in_the_same_chat(desk, sockets, monkeypatch):
    from kb.assist import handler

    release = threading.Event()
    slow = suggestions.assist

    def waiting_assist(**kwargs):
        release.wait(5)
        return slow(**kwargs)

    monkeypatch.setattr(handler.suggestions, "assist", waiting_assist)
    current = await ws.db(visitor_says, desk.v1, "how long does standard delivery take")
    agent, _ready = await sockets.agent(desk.alice)
    await agent.send_json_to({"type": "assist.suggest", "conversation": current.id})
    await agent.send_json_to(
        {"type": "message.send", "conversation": current.id, "client_msg_id": "r1", "body": "Hi"}
    )
    _ack, frames = await ws.receive_frames_until(agent, "message.ack")
    assert "assist.suggestions" not in [f["type"] for f in frames]
    release.set()
    reply = await ws.receive_until(agent, "assist.suggestions")
    assert reply["conversation"] == current.id


@pytest.mark.django_db(transaction=True)
async def test_without_the_assist_handler_the_frame_is_refused_bad_frame(
    desk, sockets, monkeypatch
):
    from chat.protocol import inbound
    from chat.transport import socket

    monkeypatch.delitem(socket._registered, inbound.AssistSuggest)
    current = await ws.db(visitor_says, desk.v1, "how long does standard delivery take")
    agent, _ready = await sockets.agent(desk.alice)
    await agent.send_json_to({"type": "assist.suggest", "conversation": current.id})
    error = await ws.receive_until(agent, "error")
    assert (error["code"], error["detail"]) == ("bad_frame", "assist.suggest is not served.")


def test_an_article_suggestion_names_its_source_in_the_language_the_visitor_writes(desk):
    found = suggestions.from_articles(desk.acme.pk, "how long does delivery take", language="es")
    [article] = found
    assert article.text.endswith(
        "\n\nDe «Shipping times and costs»: https://acme.example/help/shipping"
    )
