"""The knowledge-base bot over the visitor socket (v1.1 "Bot"): it answers a new chat
first, with `sender: "bot"` and `sources`; it hands the chat to a person when it is
unsure, too slow, or asked to (`handoff`); the agent who takes the chat gets the whole
exchange; the visitor's 👍/👎 is stored."""

import asyncio
import time

import pytest
from django.utils import translation

from agents.models import AgentProfile
from chat import system_messages
from chat.models import Conversation, Message, Visitor
from kb import answering, bot, importing
from kb.models import BotAnswer
from tests import ws

pytestmark = pytest.mark.django_db(transaction=True)

ARTICLES = [
    importing.Draft(
        "Shipping times and costs",
        "Standard delivery takes 3 to 5 business days and costs $4.95. It is free on "
        "orders over $75.\n\nExpress delivery arrives the next business day.",
        "https://acme.example/help/shipping",
    ),
    importing.Draft(
        "Gift cards",
        "Gift cards never expire. Check the balance on the gift card page.",
    ),
]


@pytest.fixture
def kb(personas, settings):
    settings.SUPPORTDESK_BOT_MODEL = False  # keyword search: fast, and the same everywhere
    importing.import_articles(personas.acme, ARTICLES)
    return personas


@pytest.fixture
async def listening():
    """The bot answers on this test's event loop, as on a worker's."""
    bot.listen()
    yield
    # Let answers still running finish before the database is flushed.
    while bot._running:
        await asyncio.gather(*list(bot._running), return_exceptions=True)


def send(body: str, client_msg_id: str) -> dict:
    return {"type": "message.send", "client_msg_id": client_msg_id, "body": body}


async def status_of(conversation_id: int) -> str:
    return await ws.db(lambda: Conversation.objects.get(pk=conversation_id).status)


async def test_the_bot_answers_the_first_message_with_the_article_and_its_link(
    kb, sockets, listening
):
    tab, _ready = await sockets.visitor(kb.acme.key, kb.token(kb.v1))
    await tab.send_json_to(send("How long does standard delivery take?", "q1"))

    ack = await ws.receive_until(tab, "message.ack")
    answer = await ws.receive_until(tab, "message")

    assert answer["sender"] == "bot"
    assert answer["seq"] == ack["seq"] + 1
    article = await ws.db(lambda: kb.acme.articles.get(title="Shipping times and costs"))
    assert answer["sources"] == [{"id": article.id, "title": "Shipping times and costs"}]
    assert "Standard delivery takes 3 to 5 business days" in answer["body"]
    assert "https://acme.example/help/shipping" in answer["body"]
    # Nobody was routed: the chat stays the bot's while it answers.
    assert await status_of(ack["conversation"]) == "bot"

    await tab.send_json_to(send("do gift cards expire", "q2"))
    follow_up = await ws.receive_until(tab, "message")
    assert follow_up["sender"] == "bot"
    assert follow_up["sources"][0]["title"] == "Gift cards"


async def test_an_unsure_bot_says_so_and_routes_the_chat_to_a_free_agent_with_the_history(
    kb, sockets, listening
):
    agent, _ready = await sockets.agent(kb.alice)
    tab, _ready = await sockets.visitor(kb.acme.key, kb.token(kb.v1))
    await tab.send_json_to(send("Can you write me a poem about the sea?", "q1"))

    reply = await ws.receive_until(tab, "message")
    assigned = await ws.receive_until(agent, "conversation.assigned")
    await ws.receive_until(tab, "conversation.assigned")

    assert reply["sender"] == "bot"
    assert reply["body"] == answering.HANDOFF_TEXT
    assert reply["sources"] == []
    history = assigned["conversation"]["messages"]
    assert [(m["sender"], m["body"]) for m in history] == [
        ("visitor", "Can you write me a poem about the sea?"),
        ("bot", answering.HANDOFF_TEXT),
    ]
    answer = await ws.db(BotAnswer.objects.get)
    assert (answer.answered, answer.handed_off) == (False, True)


async def test_talk_to_a_person_queues_the_chat_and_the_agent_gets_the_bots_messages(
    kb, sockets, listening
):
    await ws.db(lambda: AgentProfile.objects.update(status=AgentProfile.Status.AWAY))
    tab, _ready = await sockets.visitor(kb.acme.key, kb.token(kb.v1))
    await tab.send_json_to(send("how much does express delivery cost", "q1"))
    answer = await ws.receive_until(tab, "message")
    assert answer["sender"] == "bot"

    # No agent is online: the chat waits in the queue like any new chat.
    await tab.send_json_to({"type": "handoff"})
    queued = await ws.receive_until(tab, "conversation.queued")
    assert queued["position"] == 1
    assert await status_of(answer["conversation"]) == "queued"

    # The visitor writes on; the bot no longer answers (the chat is the people's now).
    await tab.send_json_to(send("hello?", "q2"))
    await ws.receive_until(tab, "message.ack")

    agent, _ready = await sockets.agent(kb.alice)
    await agent.send_json_to({"type": "presence", "status": "available"})
    assigned = await ws.receive_until(agent, "conversation.assigned")
    history = assigned["conversation"]["messages"]
    assert [m["sender"] for m in history] == ["visitor", "bot", "visitor"]
    assert history[1]["sources"] == answer["sources"]
    stored = await ws.db(lambda: list(Message.objects.values_list("sender", flat=True)))
    assert stored == ["visitor", "bot", "visitor"]
    handed = await ws.db(BotAnswer.objects.get)
    assert handed.answered and handed.handed_off


async def test_a_handoff_without_a_chat_is_not_found_and_with_people_changes_nothing(
    kb, sockets, listening
):
    tab, _ready = await sockets.visitor(kb.acme.key, kb.token(kb.v1))
    await tab.send_json_to({"type": "handoff"})
    error = await ws.receive_until(tab, "error")
    assert error["code"] == "not_found"

    agent, _ready = await sockets.agent(kb.alice)
    await tab.send_json_to(send("what is the meaning of life", "q1"))
    await ws.receive_until(agent, "conversation.assigned")
    await tab.send_json_to({"type": "handoff"})
    frames = await ws.frames_before_pong(tab)
    assert [f for f in frames if f["type"] in ("error", "conversation.queued")] == []


async def test_thumbs_up_or_down_is_stored_with_the_answer(kb, sockets, listening):
    tab, _ready = await sockets.visitor(kb.acme.key, kb.token(kb.v1))
    await tab.send_json_to(send("do gift cards expire?", "q1"))
    answer = await ws.receive_until(tab, "message")

    await tab.send_json_to({"type": "bot.feedback", "seq": answer["seq"], "helpful": False})
    confirmed = await ws.receive_until(tab, "bot.feedback")
    await tab.send_json_to({"type": "bot.feedback", "seq": answer["seq"], "helpful": True})
    await ws.receive_until(tab, "bot.feedback")
    await tab.send_json_to({"type": "bot.feedback", "seq": 1, "helpful": True})
    refused = await ws.receive_until(tab, "error")

    assert confirmed == {"type": "bot.feedback", "seq": answer["seq"], "helpful": False}
    assert refused["code"] == "not_found"  # seq 1 is the visitor's own message
    stored = await ws.db(BotAnswer.objects.get)
    assert (stored.seq, stored.helpful) == (answer["seq"], True)


async def test_an_answer_past_the_deadline_hands_the_chat_off(
    kb, sockets, listening, settings, monkeypatch
):
    settings.SUPPORTDESK_BOT_DEADLINE = 0.2
    await ws.db(lambda: AgentProfile.objects.update(status=AgentProfile.Status.AWAY))

    def slow_reply(site_id, question):
        time.sleep(1.0)  # a model stuck on a busy machine
        return answering.Reply("too late", True, None, [])

    monkeypatch.setattr(answering, "reply_to", slow_reply)
    tab, _ready = await sockets.visitor(kb.acme.key, kb.token(kb.v1))
    await tab.send_json_to(send("How long does standard delivery take?", "q1"))

    reply = await ws.receive_until(tab, "message")
    queued = await ws.receive_until(tab, "conversation.queued")

    assert reply["body"] == answering.HANDOFF_TEXT
    assert queued["conversation"] == reply["conversation"]


async def test_a_site_without_the_bot_routes_at_once(personas, sockets, listening):
    agent, _ready = await sockets.agent(personas.alice)
    tab, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    await tab.send_json_to(send("hello", "q1"))

    assigned = await ws.receive_until(agent, "conversation.assigned")

    assert [m["sender"] for m in assigned["conversation"]["messages"]] == ["visitor"]


async def test_a_german_visitor_gets_the_articles_line_in_german_and_the_handoff_as_a_code(
    kb, sockets, listening
):
    await ws.db(lambda: Visitor.objects.filter(pk=kb.v1.pk).update(language="de"))
    tab, _ready = await sockets.visitor(kb.acme.key, kb.token(kb.v1))
    await tab.send_json_to(send("How long does standard delivery take?", "q1"))
    answer = await ws.receive_until(tab, "message")
    assert answer["sender"] == "bot"
    assert answer["body"].endswith(
        "\n\nAus „Shipping times and costs“: https://acme.example/help/shipping"
    )

    await tab.send_json_to(send("Can you write me a poem about the sea?", "q2"))
    handoff = await ws.receive_until(tab, "message")
    # The English sentence in `body` (the contract's) and its code: each reader's
    # script shows it in their language, the transcripts too.
    assert (handoff["sender"], handoff["body"]) == ("bot", answering.HANDOFF_TEXT)
    assert (handoff["code"], handoff["params"]) == ("bot_handoff", {})
    stored = await ws.db(lambda: Message.objects.get(seq=handoff["seq"], sender="bot"))
    with translation.override("ar"):
        assert system_messages.sentence(stored.system_code, stored.system_params, stored.body) == (
            "لست متأكدًا من قدرتي على الإجابة عن ذلك جيدًا. سأبحث لك عن شخص يساعدك."
        )
