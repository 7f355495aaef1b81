"""Message rules: gapless seq, idempotent sends, who may post where, reads, and the cost
of sending (constant, whatever the history length)."""

import itertools
import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import AgentProfile
from chat import errors, selectors
from chat.conversations import closing, sending
from chat.conversations.actors import Actor
from chat.models import Conversation, Message, Visitor
from chat.realtime import groups

Status = Conversation.Status
_msg_ids = itertools.count(1)


def new_id() -> str:
    return f"m-{next(_msg_ids)}"


def visitor_says(visitor: Visitor, body: str = "Hello?", client_msg_id: str | None = None):
    return sending.post_message(
        Actor.visitor(visitor.pk), client_msg_id=client_msg_id or new_id(), body=body
    )


def agent_says(
    agent: AgentProfile,
    conversation_id: int,
    body: str = "How can I help?",
    client_msg_id: str | None = None,
):
    return sending.post_message(
        Actor.agent(agent.pk),
        conversation_id=conversation_id,
        client_msg_id=client_msg_id or new_id(),
        body=body,
    )


def open_chat(visitor: Visitor) -> Conversation:
    posted = visitor_says(visitor)
    return Conversation.objects.get(pk=posted.message["conversation"])


def stored(conversation: Conversation) -> list[tuple[int, str, str]]:
    return list(
        Message.objects.filter(conversation=conversation)
        .order_by("seq")
        .values_list("seq", "sender", "body")
    )


# --- seq and idempotency ----------------------------------------------------------


def test_first_visitor_message_opens_a_conversation_and_later_ones_join_it(personas):
    assert selectors.open_conversation(personas.v1.pk) is None

    first = visitor_says(personas.v1, "Where is my order?")
    second = visitor_says(personas.v1, "Order 42.")

    conversation = selectors.open_conversation(personas.v1.pk)
    assert conversation is not None
    assert first.created and second.created
    assert first.message["conversation"] == second.message["conversation"] == conversation.pk
    assert conversation.site_id == personas.acme.pk
    assert stored(conversation) == [
        (1, "visitor", "Where is my order?"),
        (2, "visitor", "Order 42."),
    ]
    assert Conversation.objects.filter(visitor=personas.v1).count() == 1


def test_seq_is_gapless_across_visitor_agent_and_system_messages(personas):
    alice = personas.alice
    conversation = open_chat(personas.v1)
    assert Conversation.objects.get(pk=conversation.pk).agent_id == alice.pk
    agent_says(alice, conversation.pk, "Hi, Alice here.")
    visitor_says(personas.v1, "My parcel is late.")
    # Alice vanishes: the visitor is told by a system message, which takes a seq too.
    lapsed = timezone.now() - timedelta(
        seconds=settings.SUPPORTDESK_HEARTBEAT_TIMEOUT + settings.SUPPORTDESK_AGENT_GRACE + 1
    )
    AgentProfile.objects.filter(pk=alice.pk).update(last_heartbeat=lapsed)
    assert closing.requeue_lapsed_agents() == [conversation.pk]
    last = visitor_says(personas.v1, "Hello? Anyone?")

    rows = stored(conversation)
    assert [seq for seq, _sender, _body in rows] == [1, 2, 3, 4, 5]
    assert [sender for _seq, sender, _body in rows] == [
        "visitor",
        "agent",
        "visitor",
        "system",
        "visitor",
    ]
    assert last.message["seq"] == 5
    assert Conversation.objects.get(pk=conversation.pk).last_seq == 5


# Sends of both sides racing on separate connections, as several workers' would.
RACERS, SENDS_EACH = 4, 15
WAIT = 10.0


@pytest.mark.django_db(transaction=True)
def test_sends_racing_from_both_sides_get_gapless_seqs_and_consistent_read_state(personas):
    conversation = open_chat(personas.v1)  # seq 1, assigned to alice
    start = threading.Barrier(2 * RACERS)
    failures = []

    def send(side: str, racer: int) -> None:
        try:
            start.wait(WAIT)
            for n in range(SENDS_EACH):
                client_msg_id = f"{side}-{racer}-{n}"
                if side == "visitor":
                    visitor_says(personas.v1, client_msg_id, client_msg_id=client_msg_id)
                else:
                    agent_says(personas.alice, conversation.pk, client_msg_id, client_msg_id)
        except Exception as exc:  # reported below, with the racer that hit it
            failures.append((side, racer, exc))
        finally:
            connection.close()  # this thread's own

    racers = [
        threading.Thread(target=send, args=(side, racer))
        for side in ("visitor", "agent")
        for racer in range(RACERS)
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(WAIT)

    assert failures == []
    total = 1 + 2 * RACERS * SENDS_EACH
    messages = stored(conversation)
    assert [seq for seq, _, _ in messages] == list(range(1, total + 1))
    # Each racer's sends were stored once each, in the order it sent them.
    for side in ("visitor", "agent"):
        for racer in range(RACERS):
            mine = [body for _, sender, body in messages if body.startswith(f"{side}-{racer}-")]
            assert mine == [f"{side}-{racer}-{n}" for n in range(SENDS_EACH)]
    conversation.refresh_from_db()
    last_agent = max(seq for seq, sender, _ in messages if sender == "agent")
    assert conversation.last_seq == total
    assert conversation.agent_read_seq == last_agent
    assert conversation.agent_unread == total - last_agent


def test_seq_counts_per_conversation(personas):
    first = open_chat(personas.v1)
    visitor_says(personas.v1)
    second = open_chat(personas.v2)

    assert [seq for seq, _, _ in stored(first)] == [1, 2]
    assert [seq for seq, _, _ in stored(second)] == [1]


def test_retried_visitor_message_is_stored_once_and_gets_the_same_seq(personas):
    original = visitor_says(personas.v1, "Where is my order?", client_msg_id="abc")
    visitor_says(personas.v1, "Order 42.")

    retry = visitor_says(personas.v1, "Where is my order?", client_msg_id="abc")

    assert original.created is True
    assert retry.created is False
    assert retry.message["seq"] == original.message["seq"] == 1
    assert retry.message == original.message
    conversation = selectors.open_conversation(personas.v1.pk)
    assert [seq for seq, _, _ in stored(conversation)] == [1, 2]
    assert conversation.last_seq == 2


def test_retried_agent_message_is_stored_once_and_gets_the_same_seq(personas):
    conversation = open_chat(personas.v1)
    original = agent_says(personas.alice, conversation.pk, "Hi!", client_msg_id="xyz")
    visitor_says(personas.v1, "Hi Alice.")

    retry = agent_says(personas.alice, conversation.pk, "Hi!", client_msg_id="xyz")

    assert (original.created, retry.created) == (True, False)
    assert retry.message["seq"] == original.message["seq"] == 2
    assert retry.message == original.message
    assert stored(conversation) == [
        (1, "visitor", "Hello?"),
        (2, "agent", "Hi!"),
        (3, "visitor", "Hi Alice."),
    ]


def test_visitor_retry_after_the_conversation_closed_gets_the_original_ack(personas):
    original = visitor_says(personas.v1, "Thanks, bye.", client_msg_id="last-words")
    closing.close_conversation(Actor.visitor(personas.v1.pk))

    retry = visitor_says(personas.v1, "Thanks, bye.", client_msg_id="last-words")

    assert retry.created is False
    assert retry.message == original.message
    assert selectors.open_conversation(personas.v1.pk) is None
    assert Conversation.objects.filter(visitor=personas.v1).count() == 1
    assert Message.objects.filter(conversation__visitor=personas.v1).count() == 1


def test_agent_retry_after_closing_the_conversation_gets_the_original_ack(personas):
    conversation = open_chat(personas.v1)
    original = agent_says(personas.alice, conversation.pk, "Solved!", client_msg_id="done")
    closing.close_conversation(Actor.agent(personas.alice.pk), conversation_id=conversation.pk)

    retry = agent_says(personas.alice, conversation.pk, "Solved!", client_msg_id="done")

    assert retry.created is False
    assert retry.message == original.message
    assert len(stored(conversation)) == 2


def test_same_client_msg_id_from_the_other_side_is_refused_not_merged(personas):
    conversation = open_chat(personas.v1)
    agent_says(personas.alice, conversation.pk, "Hi!", client_msg_id="shared")

    with pytest.raises(errors.ClientMsgIdTaken):
        visitor_says(personas.v1, "Hi back", client_msg_id="shared")

    assert [sender for _, sender, _ in stored(conversation)] == ["visitor", "agent"]


# --- who may post where -----------------------------------------------------------


def test_agent_cannot_post_into_a_conversation_assigned_to_someone_else(personas):
    conversation = open_chat(personas.v1)
    assert Conversation.objects.get(pk=conversation.pk).agent_id == personas.alice.pk

    with pytest.raises(errors.NotFound):
        agent_says(personas.bob, conversation.pk, "Let me butt in.")

    assert stored(conversation) == [(1, "visitor", "Hello?")]
    assert Conversation.objects.get(pk=conversation.pk).last_seq == 1


def test_agent_cannot_post_into_a_queued_or_missing_conversation(personas):
    AgentProfile.objects.update(status=AgentProfile.Status.AWAY)
    queued = open_chat(personas.v1)
    assert Conversation.objects.get(pk=queued.pk).status == Status.QUEUED

    with pytest.raises(errors.NotFound):
        agent_says(personas.alice, queued.pk)
    with pytest.raises(errors.NotFound):
        agent_says(personas.alice, queued.pk + 1000)

    assert stored(queued) == [(1, "visitor", "Hello?")]


def test_agent_cannot_post_into_their_own_closed_conversation(personas):
    conversation = open_chat(personas.v1)
    closing.close_conversation(Actor.visitor(personas.v1.pk))

    with pytest.raises(errors.ConversationClosed):
        agent_says(personas.alice, conversation.pk, "Are you still there?")

    assert stored(conversation) == [(1, "visitor", "Hello?")]


# --- broadcasts -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_message_reaches_both_sides_except_the_sending_socket(personas, capture_broadcasts):
    conversation = open_chat(personas.v1)
    capture_broadcasts.clear()

    sending.post_message(
        Actor.visitor(personas.v1.pk),
        client_msg_id="v-1",
        body="From my phone",
        origin="visitor-phone",
    )
    sending.post_message(
        Actor.agent(personas.alice.pk),
        conversation_id=conversation.pk,
        client_msg_id="a-1",
        body="Got it",
        origin="alice-tab",
    )

    sent = [
        (group, event["frame"]["body"], event["skip_channel"])
        for group, event in capture_broadcasts
        if event["type"] == groups.FRAME_EVENT and event["frame"]["type"] == "message"
    ]
    visitor_group = groups.visitor_group(personas.v1.pk)
    alice_group = groups.agent_group(personas.alice.pk)
    assert sorted(sent) == sorted(
        [
            (visitor_group, "From my phone", "visitor-phone"),
            (alice_group, "From my phone", "visitor-phone"),
            (visitor_group, "Got it", "alice-tab"),
            (alice_group, "Got it", "alice-tab"),
        ]
    )
    frame = capture_broadcasts.frames(alice_group, "message")[0]
    assert frame == {
        "type": "message",
        "conversation": conversation.pk,
        "seq": 2,
        "sender": "visitor",
        "body": "From my phone",
        "client_msg_id": "v-1",
        "sent_at": frame["sent_at"],
    }


@pytest.mark.django_db(transaction=True)
def test_message_in_a_queued_conversation_reaches_only_the_visitor(personas, capture_broadcasts):
    AgentProfile.objects.update(status=AgentProfile.Status.AWAY)

    open_chat(personas.v1)

    reached = {
        group
        for group, event in capture_broadcasts
        if event["type"] == groups.FRAME_EVENT and event["frame"]["type"] == "message"
    }
    assert reached == {groups.visitor_group(personas.v1.pk)}


@pytest.mark.django_db(transaction=True)
def test_retry_broadcasts_nothing_new(personas, capture_broadcasts):
    visitor_says(personas.v1, client_msg_id="once")
    capture_broadcasts.clear()

    visitor_says(personas.v1, client_msg_id="once")

    assert list(capture_broadcasts) == []


# --- reads ------------------------------------------------------------------------


def test_visitor_read_past_last_seq_is_refused_and_changes_nothing(personas):
    visitor_says(personas.v1)
    visitor_says(personas.v1)

    with pytest.raises(errors.SeqOutOfRange):
        sending.mark_read(Actor.visitor(personas.v1.pk), seq=3)

    assert selectors.open_conversation(personas.v1.pk).visitor_read_seq == 0
    sending.mark_read(Actor.visitor(personas.v1.pk), seq=2)
    assert selectors.open_conversation(personas.v1.pk).visitor_read_seq == 2


def test_agent_read_past_last_seq_is_refused_and_changes_nothing(personas):
    conversation = open_chat(personas.v1)

    with pytest.raises(errors.SeqOutOfRange):
        sending.mark_read(Actor.agent(personas.alice.pk), conversation_id=conversation.pk, seq=2)

    conversation.refresh_from_db()
    assert (conversation.agent_read_seq, conversation.agent_unread) == (0, 1)


def test_agent_read_of_a_conversation_not_theirs_is_not_found(personas):
    conversation = open_chat(personas.v1)

    with pytest.raises(errors.NotFound):
        sending.mark_read(Actor.agent(personas.bob.pk), conversation_id=conversation.pk, seq=1)


def test_agent_read_lowers_unread_to_the_visitor_messages_after_it(personas):
    conversation = open_chat(personas.v1)
    visitor_says(personas.v1, "second")
    visitor_says(personas.v1, "third")
    conversation.refresh_from_db()
    assert conversation.agent_unread == 3

    sending.mark_read(Actor.agent(personas.alice.pk), conversation_id=conversation.pk, seq=2)

    conversation.refresh_from_db()
    assert (conversation.agent_read_seq, conversation.agent_unread) == (2, 1)
    # Reading an older seq again never moves the mark back.
    sending.mark_read(Actor.agent(personas.alice.pk), conversation_id=conversation.pk, seq=1)
    conversation.refresh_from_db()
    assert (conversation.agent_read_seq, conversation.agent_unread) == (2, 1)


def test_agent_answer_counts_as_having_read_everything_before_it(personas):
    conversation = open_chat(personas.v1)
    visitor_says(personas.v1, "second")

    agent_says(personas.alice, conversation.pk)

    conversation.refresh_from_db()
    assert (conversation.agent_read_seq, conversation.agent_unread) == (3, 0)


def test_messages_after_returns_exactly_the_later_messages_in_order(personas):
    conversation = open_chat(personas.v1)
    for n in range(2, 6):
        if n % 2:
            visitor_says(personas.v1, f"visitor {n}")
        else:
            agent_says(personas.alice, conversation.pk, f"agent {n}")

    after_two = selectors.messages_after(conversation.pk, 2)

    assert [(m["seq"], m["body"]) for m in after_two] == [
        (3, "visitor 3"),
        (4, "agent 4"),
        (5, "visitor 5"),
    ]
    assert set(after_two[0]) == {
        "conversation",
        "seq",
        "sender",
        "body",
        "client_msg_id",
        "sent_at",
    }
    assert len(selectors.messages_after(conversation.pk, 0)) == 5
    assert selectors.messages_after(conversation.pk, 5) == []


# --- the hot path -----------------------------------------------------------------


# The UPDATE of the conversation that locks it and allocates the seq (skipped when the
# client_msg_id is already used there, a retry), the INSERT of the message, and the
# message's durable event where a webhook asked for one (chat/store/durable.py): one
# statement on PostgreSQL, three on SQLite (messages.append_at_once). Transaction
# control (SAVEPOINT, BEGIN) is left out of the count: it differs between databases
# and test modes.
def queries_per_send() -> int:
    return 1 if connection.vendor == "postgresql" else 3


# What every message changes in its conversation's row.
CHANGED_PER_MESSAGE = {
    "last_seq",
    "last_activity_at",
    "agent_unread",
    "agent_read_seq",
    "visitor_read_seq",
}


@pytest.mark.django_db
def test_no_index_holds_what_every_message_changes_so_postgresql_updates_in_place():
    # An index on any of these would make PostgreSQL write an entry into every index of
    # the table for each message, instead of updating the row in place (HOT).
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Conversation._meta.db_table)
    indexed = {
        name: set(details["columns"]) & CHANGED_PER_MESSAGE
        for name, details in constraints.items()
        if details["index"] or details["unique"]
    }
    assert {name: columns for name, columns in indexed.items() if columns} == {}
    assert "conversation_open" in constraints  # the idle sweep's index


def _data_queries(context: CaptureQueriesContext) -> list[str]:
    control = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "BEGIN", "COMMIT")
    # On PostgreSQL the send path's statements are bound on the server, and Django's
    # debug cursor records them as None (services._hot_cursor): still a query each.
    sqls = [q["sql"] or "" for q in context.captured_queries]
    return [sql for sql in sqls if not sql.upper().startswith(control)]


def _with_history(visitor: Visitor, agent: AgentProfile, length: int) -> Conversation:
    conversation = open_chat(visitor)
    assert Conversation.objects.get(pk=conversation.pk).agent_id == agent.pk
    for _ in range(length - 1):
        visitor_says(visitor, "more")
    conversation.refresh_from_db()
    assert conversation.last_seq == length
    return conversation


def test_sending_costs_the_same_few_queries_whatever_the_history_length(personas):
    short = _with_history(personas.v1, personas.alice, 1)
    long = _with_history(personas.v2, personas.bob, 200)
    cost = {}

    for history, conversation, visitor, agent in (
        (1, short, personas.v1, personas.alice),
        (200, long, personas.v2, personas.bob),
    ):
        with CaptureQueriesContext(connection) as context:
            agent_says(agent, conversation.pk)
        cost["agent", history] = _data_queries(context)
        with CaptureQueriesContext(connection) as context:
            visitor_says(visitor)
        cost["visitor", history] = _data_queries(context)

    assert {key: len(queries) for key, queries in cost.items()} == {
        ("agent", 1): queries_per_send(),
        ("visitor", 1): queries_per_send(),
        ("agent", 200): queries_per_send(),
        ("visitor", 200): queries_per_send(),
    }, cost
