"""The bot's services without sockets: the sweep hands off a chat whose answer was lost,
the admin shows the articles' analytics and the bot's mode, /healthz says the mode."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agents.models import AgentProfile
from chat import analytics, events
from chat.conversations import bots, closing, sending
from chat.conversations.actors import Actor
from chat.models import Conversation
from kb import answering, bot, embedding, importing
from kb.models import Article, BotAnswer

pytestmark = pytest.mark.django_db


@pytest.fixture
def kb(personas, settings):
    settings.SUPPORTDESK_BOT_MODEL = False
    importing.import_articles(
        personas.acme, [importing.Draft("Gift cards", "Gift cards never expire.")]
    )
    return personas


@pytest.fixture(autouse=True)
def _bot_deaf():
    """Nobody hears the messages: the tests answer (or not) themselves, as when the
    worker that heard a message died."""
    events.unsubscribe(events.MessageCreated, bot.message_created)
    yield
    events.subscribe(events.MessageCreated, bot.message_created)


def bot_chat(personas, monkeypatch, body: str = "do gift cards expire") -> int:
    """A visitor's first message into a chat the bot has, with nobody to answer it."""
    posted = sending.post_message(Actor.visitor(personas.v1.id), client_msg_id="q1", body=body)
    return posted.conversation_id


def test_the_sweep_hands_off_a_bot_chat_left_unanswered_past_twice_the_deadline(
    kb, monkeypatch, settings
):
    conversation_id = bot_chat(kb, monkeypatch)
    now = timezone.now()

    assert bot.sweep(now=now) == []  # not late yet
    late = now + timedelta(seconds=2 * settings.SUPPORTDESK_BOT_DEADLINE + 1)
    assert bot.sweep(now=late) == [conversation_id]

    conversation = Conversation.objects.get(pk=conversation_id)
    assert conversation.status != Conversation.Status.BOT  # queued, or with a free agent
    assert bot.sweep(now=late) == []


def test_an_answer_after_the_hand_off_is_dropped(kb, monkeypatch):
    conversation_id = bot_chat(kb, monkeypatch)
    bots.hand_off(conversation_id=conversation_id, by="bot")

    outcome = bot.answer_now(
        conversation_id=conversation_id, site_id=kb.acme.id, seq=1, question="gift cards"
    )

    assert outcome == "not_the_bots"
    assert list(
        Conversation.objects.get(pk=conversation_id).messages.values_list("sender", flat=True)
    ) == ["visitor"]


def test_the_admin_lists_articles_with_what_the_bot_did_and_the_bots_mode(
    kb, monkeypatch, admin_client
):
    conversation_id = bot_chat(kb, monkeypatch)
    assert (
        bot.answer_now(
            conversation_id=conversation_id,
            site_id=kb.acme.id,
            seq=1,
            question="do gift cards expire",
        )
        == "answered"
    )
    BotAnswer.objects.update(helpful=False)

    articles = admin_client.get(reverse("admin:kb_article_changelist"))
    settings_page = admin_client.get(reverse("admin:kb_botsettings_changelist"))
    article = Article.objects.get()
    edit = admin_client.get(reverse("admin:kb_article_change", args=[article.pk]))

    assert articles.status_code == 200
    row = articles.context["cl"].result_list[0]
    assert (row.n_answered, row.n_handed_off, row.n_helpful, row.n_not_helpful) == (1, 0, 0, 1)
    assert "keyword search only" in settings_page.content.decode()
    assert edit.status_code == 200


def test_healthz_says_which_mode_the_bot_answers_in(client, settings):
    settings.SUPPORTDESK_BOT_MODEL = False

    response = client.get("/healthz")

    assert response.json()["bot"] == {"mode": "keyword"}


def test_a_chat_the_bot_answered_and_closed_is_not_a_missed_chat(kb, monkeypatch):
    answered_by_bot = bot_chat(kb, monkeypatch)
    bot.answer_now(
        conversation_id=answered_by_bot, site_id=kb.acme.id, seq=1, question="gift cards"
    )
    closing.close_conversation(actor=Actor.visitor(kb.v1.id))
    handed_off = sending.post_message(
        Actor.visitor(kb.v2.id), client_msg_id="q2", body="a poem please"
    ).conversation_id
    AgentProfile.objects.update(status=AgentProfile.Status.AWAY)  # nobody takes it
    bots.hand_off(conversation_id=handed_off, by="bot")
    closing.close_conversation(actor=Actor.visitor(kb.v2.id))

    (cell,) = analytics.count_cells(Conversation.objects.all())

    assert (cell["chats"], cell["answered"], cell["missed"]) == (2, 0, 1)


def test_a_visitor_id_that_looks_like_the_bots_does_not_swallow_the_answer(kb):
    posted = sending.post_message(
        Actor.visitor(kb.v1.id), client_msg_id="bot-1", body="do gift cards expire"
    )

    outcome = bot.answer_now(
        conversation_id=posted.conversation_id, site_id=kb.acme.id, seq=1, question="gift cards"
    )

    senders = Conversation.objects.get(pk=posted.conversation_id).messages.values_list(
        "sender", "client_msg_id"
    )
    assert outcome == "answered"
    assert list(senders) == [("visitor", "bot-1"), ("bot", None)]


def test_a_visitor_closes_a_chat_the_bot_has_without_touching_the_queue(kb, monkeypatch):
    conversation_id = bot_chat(kb, monkeypatch)
    readings = []
    monkeypatch.setattr(closing.queue, "changed", lambda *args, **kwargs: readings.append(args))

    closing.close_conversation(actor=Actor.visitor(kb.v1.id))

    conversation = Conversation.objects.get(pk=conversation_id)
    assert (conversation.status, conversation.closed_by) == ("closed", "visitor")
    assert readings == []


def test_an_answer_does_not_wait_for_the_model_to_load(kb, monkeypatch, settings):
    settings.SUPPORTDESK_BOT_MODEL = True
    monkeypatch.setattr(embedding, "_model", None)  # installed, not loaded yet
    monkeypatch.setattr(embedding, "installed", lambda: True)
    loads = []
    monkeypatch.setattr(embedding, "_load_in_background", lambda: loads.append("started"))

    reply = answering.reply_to(kb.acme.id, "do gift cards expire?")

    assert reply.confident and reply.hit.meaning is None  # keywords alone, this time
    assert loads == ["started"]


class _Recorder:
    """An answer thread pool that only records what it was asked to answer."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def submit(self, function, /, answer, **job) -> None:
        self.asked.append(job["question"])


def test_only_a_message_stored_while_the_bot_has_the_chat_is_put_to_it(
    kb, monkeypatch, django_capture_on_commit_callbacks
):
    answers = _Recorder()
    monkeypatch.setattr(bot, "_loop", None)
    monkeypatch.setattr(bot, "_threads", lambda: answers)
    events.subscribe(events.MessageCreated, bot.message_created)
    AgentProfile.objects.update(status=AgentProfile.Status.AWAY)
    with django_capture_on_commit_callbacks(execute=True):
        conversation_id = bot_chat(kb, monkeypatch, body="do gift cards expire")
    with django_capture_on_commit_callbacks(execute=True):
        bots.hand_off(conversation_id=conversation_id, by="visitor")
    assert Conversation.objects.get(pk=conversation_id).status == Conversation.Status.QUEUED

    # The everyday send (one statement) into the chat now queued for people.
    with django_capture_on_commit_callbacks(execute=True):
        sending.post_message(Actor.visitor(kb.v1.id), client_msg_id="q2", body="hello?")

    assert answers.asked == ["do gift cards expire"]
