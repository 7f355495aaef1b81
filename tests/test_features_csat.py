"""CSAT: the visitor rates its latest chat once (1-5 and an optional comment); the
agent hears it, a reconnecting widget knows it was rated."""

import pytest

from chat import errors
from chat.conversations import closing, ratings, sending
from chat.conversations.actors import Actor
from chat.models import ConversationRating
from chat.realtime import groups
from tests import ws

pytestmark = pytest.mark.django_db(transaction=True)


def chat_and_close(visitor) -> int:
    posted = sending.post_message(
        Actor.visitor(visitor.id), client_msg_id=f"open-{visitor.id}", body="Hi"
    )
    closing.close_conversation(Actor.visitor(visitor.id))
    return posted.message["conversation"]


# --- services -------------------------------------------------------------------


def test_rating_a_closed_chat_stores_it_and_tells_the_visitor_and_the_agent(
    personas, capture_broadcasts
):
    chat_id = chat_and_close(personas.v1)
    capture_broadcasts.clear()

    ratings.rate_conversation(visitor_id=personas.v1.id, score=4, comment="Quick and kind")

    rating = ConversationRating.objects.get(conversation_id=chat_id)
    assert (rating.score, rating.comment) == (4, "Quick and kind")
    [to_visitor] = capture_broadcasts.frames(
        groups.visitor_group(personas.v1.id), "conversation.rated"
    )
    assert to_visitor == {"type": "conversation.rated", "conversation": chat_id, "score": 4}
    [to_agent] = capture_broadcasts.frames(
        groups.agent_group(personas.alice.id), "conversation.rated"
    )
    assert to_agent["comment"] == "Quick and kind"


def test_a_chat_can_be_rated_only_once(personas):
    chat_and_close(personas.v1)
    ratings.rate_conversation(visitor_id=personas.v1.id, score=5)
    with pytest.raises(errors.AlreadyRated):
        ratings.rate_conversation(visitor_id=personas.v1.id, score=1, comment="changed my mind")
    assert list(ConversationRating.objects.values_list("score", flat=True)) == [5]


def test_a_visitor_without_a_chat_has_nothing_to_rate(personas):
    with pytest.raises(errors.NotFound):
        ratings.rate_conversation(visitor_id=personas.v1.id, score=3)


def test_rating_goes_to_the_visitors_own_latest_chat(personas):
    mine = chat_and_close(personas.v1)
    chat_and_close(personas.v2)
    ratings.rate_conversation(visitor_id=personas.v1.id, score=2)
    assert ConversationRating.objects.get().conversation_id == mine


# --- sockets --------------------------------------------------------------------


async def test_visitor_rates_over_the_socket_and_a_new_tab_sees_it_rated(personas, sockets):
    visitor, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    other_tab, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    alice, _ = await sockets.agent(personas.alice)
    await visitor.send_json_to({"type": "message.send", "client_msg_id": "c-1", "body": "Hi"})
    chat_id = (await ws.receive_until(alice, "conversation.assigned"))["conversation"]["id"]
    await visitor.send_json_to({"type": "conversation.close"})
    await ws.receive_until(visitor, "conversation.closed")

    await visitor.send_json_to({"type": "rating", "score": 5, "comment": "  Great help  "})

    rated = await ws.receive_until(visitor, "conversation.rated")
    assert rated == {"type": "conversation.rated", "conversation": chat_id, "score": 5}
    assert (await ws.receive_until(other_tab, "conversation.rated"))["score"] == 5
    to_alice = await ws.receive_until(alice, "conversation.rated")
    assert to_alice["comment"] == "Great help"
    _new_tab, ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    assert ready["conversation"]["rating"] == 5

    await visitor.send_json_to({"type": "rating", "score": 1})
    assert (await ws.receive_until(visitor, "error"))["code"] == "already_rated"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "rating", "score": 0}, "bad_frame"),
        ({"type": "rating", "score": 6}, "bad_frame"),
        ({"type": "rating", "score": True}, "bad_frame"),
        ({"type": "rating", "score": "5"}, "bad_frame"),
        ({"type": "rating", "score": 4, "comment": 7}, "bad_frame"),
        ({"type": "rating", "score": 4, "comment": "x" * 2001}, "too_long"),
    ],
)
async def test_malformed_ratings_are_refused_and_store_nothing(personas, sockets, frame, code):
    await ws.db(chat_and_close, personas.v1)
    visitor, ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    assert ready["conversation"]["rating"] is None
    await visitor.send_json_to(frame)
    assert (await ws.receive_until(visitor, "error"))["code"] == code
    assert not await ws.db(ConversationRating.objects.exists)
