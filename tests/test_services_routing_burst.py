"""Routing under a burst: what a new chat costs when everyone is full, one ranking per
routing run, the new agent's copy of a chat, and queue readings shared by the changes
made while one is under way (docs/performance.md, change 8)."""

import itertools
import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import AgentProfile
from chat import realtime, routing_policy, selectors, services
from chat.models import Attachment, Conversation, Message, Note, SenderKind, Site, Visitor
from tests.conftest import make_agent

Status = Conversation.Status
_msg_ids = itertools.count(1)
# A condition that must come true within this many seconds, or the test fails.
WAIT = 10.0


def open_chat(visitor: Visitor) -> Conversation:
    posted = services.post_visitor_message(
        visitor_id=visitor.pk, client_msg_id=f"b-{next(_msg_ids)}", body="Hello?"
    )
    return Conversation.objects.get(pk=posted.message["conversation"])


def new_visitor(site: Site) -> Visitor:
    visitor, _token = services.create_visitor_session(site_key=site.key, visitor_token=None)
    return visitor


def set_status(agent: AgentProfile, status: str) -> None:
    AgentProfile.objects.filter(pk=agent.pk).update(status=status, last_heartbeat=timezone.now())


def ranking_reads(queries) -> int:
    return sum(1 for sql in statements(queries) if "AS active_load" in sql)


def statements(queries: CaptureQueriesContext) -> list[str]:
    # Statements bound on the server are recorded with no SQL (services._hot_cursor).
    return [q["sql"] or "" for q in queries]


# --- the ranking, written out as SQL ------------------------------------------------


def test_the_ranking_offers_exactly_the_routable_agents_in_their_order(personas):
    site, other = personas.acme, Site.objects.create(name="globex", allowed_origins=[])
    alice, bob = personas.alice, personas.bob
    carol = make_agent("carol", 3)  # serves acme explicitly, idle longest
    carol.sites.add(site)
    AgentProfile.objects.filter(pk=carol.pk).update(
        last_assigned_at=timezone.now() - timedelta(hours=1)
    )
    make_agent("dave", 2).sites.add(other)  # another site's agent
    make_agent("erin", 2, available=False)  # away
    make_agent("frank", 0)  # present, but never routed
    gone = make_agent("gina", 2)
    get_user_model().objects.filter(pk=gone.user_id).update(is_active=False)
    stale = make_agent("hank", 2)
    AgentProfile.objects.filter(pk=stale.pk).update(
        last_heartbeat=selectors.heartbeat_cutoff() - timedelta(seconds=1)
    )
    open_chat(personas.v1)  # to carol: the least loaded, idle longest
    open_chat(personas.v2)  # to alice (never assigned) before bob: lower id
    open_chat(personas.v3)  # to bob

    ranked = selectors.present_agent_loads(site.pk)

    routable = list(selectors.routable_agents(site.pk).values_list("id", flat=True))
    assert [agent for agent, capacity, load in ranked if load < capacity] == routable
    assert {agent: (capacity, load) for agent, capacity, load in ranked} == {
        alice.pk: (2, 1),
        bob.pk: (1, 1),
        carol.pk: (3, 1),
    }


# --- a new chat when every agent is full ------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_new_chat_finding_every_agent_full_locks_no_row_and_reads_the_agents_once(personas):
    for visitor in (personas.v1, personas.v2, personas.v3):
        open_chat(visitor)  # alice 2/2, bob 1/1
    waiting = [new_visitor(personas.acme) for _ in range(3)]
    open_chat(waiting[0])

    with CaptureQueriesContext(connection) as queries:
        queued = open_chat(waiting[1])

    assert queued.status == Status.QUEUED
    routing = [sql for sql in statements(queries) if "agents_agentprofile" in sql]
    # One look at the agents; no agent row, and no queued chat, locked to find out.
    assert len(routing) == 1
    assert ranking_reads(queries) == 1
    assert not [
        sql for sql in statements(queries) if selectors.QUEUE_ORDER in sql and "LIMIT 1" in sql
    ]


@pytest.mark.django_db(transaction=True)
def test_one_routing_run_reads_the_agents_once_however_many_chats_it_places(
    personas, capture_broadcasts
):
    alice, bob = personas.alice, personas.bob
    for agent in (alice, bob):
        set_status(agent, AgentProfile.Status.AWAY)
    chats = [open_chat(v) for v in (personas.v1, personas.v2, personas.v3)]
    for agent in (alice, bob):
        set_status(agent, AgentProfile.Status.AVAILABLE)

    with CaptureQueriesContext(connection) as queries:
        assigned = services.assign_queued(site_ids=[personas.acme.pk])

    assert assigned == [c.pk for c in chats]
    assert ranking_reads(queries) == 1
    # Least loaded first, then idle longest: alice, bob, then alice again.
    assert [Conversation.objects.get(pk=c.pk).agent_id for c in chats] == [
        alice.pk,
        bob.pk,
        alice.pk,
    ]


def test_a_router_reads_the_agents_again_before_giving_up_on_a_chat_it_locked_later(
    personas,
):
    bob = personas.bob
    AgentProfile.objects.filter(pk=personas.alice.pk).update(status=AgentProfile.Status.AWAY)
    open_chat(personas.v1)  # bob is full
    ranking = routing_policy.Ranking(personas.acme.pk, timezone.now())
    # Bob's chat closes after the ranking was read (its own routing found nothing to do).
    Conversation.objects.filter(agent=bob).update(status=Status.CLOSED)

    with_fresh_ranking = routing_policy.lock_agent_for(ranking)
    ranking.stale = True
    after_a_stale_one = routing_policy.lock_agent_for(ranking)

    assert with_fresh_ranking is None
    assert after_a_stale_one is not None and after_a_stale_one.pk == bob.pk


# --- what the new agent is handed -------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_chat_sent_back_to_the_queue_reaches_its_next_agent_with_its_notes_and_files(
    personas, capture_broadcasts
):
    alice, bob = personas.alice, personas.bob
    AgentProfile.objects.filter(pk=bob.pk).update(status=AgentProfile.Status.AWAY)
    chat = open_chat(personas.v1)
    assert Conversation.objects.get(pk=chat.pk).agent_id == alice.pk
    services.post_note(
        agent_id=alice.pk, conversation_id=chat.pk, client_msg_id="n1", body="Refund promised"
    )
    message = Message.objects.get(conversation=chat, seq=1)
    Attachment.objects.create(
        conversation=chat,
        message=message,
        uploaded_by=SenderKind.VISITOR,
        file="broken.png",
        name="broken.png",
        content_type="image/png",
        size=3,
    )
    set_status(bob, AgentProfile.Status.AVAILABLE)
    capture_broadcasts.clear()

    services.transfer_conversation(agent_id=alice.pk, conversation_id=chat.pk, to_agent_id=None)

    [handed] = capture_broadcasts.frames(realtime.agent_group(bob.pk), "conversation.assigned")
    assert [n["body"] for n in handed["conversation"]["notes"]] == ["Refund promised"]
    first, system = handed["conversation"]["messages"]
    assert first["attachment"]["name"] == "broken.png"
    assert system["sender"] == SenderKind.SYSTEM
    # Unread for bob: the visitor's one message (the system message is not the visitor's).
    assert handed["conversation"]["unread"] == 1


@pytest.mark.django_db(transaction=True)
def test_a_new_chat_reaches_its_agent_with_its_message_and_no_notes(personas, capture_broadcasts):
    chat = open_chat(personas.v1)

    [handed] = capture_broadcasts.frames(
        realtime.agent_group(personas.alice.pk), "conversation.assigned"
    )
    assert [m["body"] for m in handed["conversation"]["messages"]] == ["Hello?"]
    assert handed["conversation"]["notes"] == []
    assert handed["conversation"]["unread"] == 1
    assert handed["conversation"]["visitor"] == {"id": personas.v1.pk}
    assert not Note.objects.filter(conversation=chat).exists()


# --- queue readings shared by the changes made meanwhile ----------------------------


@pytest.mark.django_db(transaction=True)
def test_changes_made_during_a_reading_share_one_next_reading_with_right_positions(
    personas, monkeypatch
):
    for visitor in (personas.v1, personas.v2, personas.v3):
        open_chat(visitor)  # everyone full
    site = personas.acme
    waiting = [new_visitor(site) for _ in range(3)]
    queued = [open_chat(v) for v in waiting]
    reading_started, finish_reading = threading.Event(), threading.Event()
    readings = []
    real_read_queue = services.read_queue

    def slow_first_reading(site_id, starts):
        # Held before its transaction: SQLite's IMMEDIATE transaction would hold the
        # write lock the test's own change below needs.
        readings.append(site_id)
        if len(readings) == 1:
            reading_started.set()
            assert finish_reading.wait(WAIT)
        real_read_queue(site_id, starts)

    monkeypatch.setattr(services, "read_queue", slow_first_reading)
    outboxes = {}

    def broadcast(name, **kwargs):
        try:
            with realtime.Outbox() as events:
                services._broadcast_queue(site.pk, **kwargs)
            outboxes[name] = events
        finally:
            connection.close()  # this thread's own

    running = threading.Thread(target=broadcast, args=("running",))
    running.start()
    assert reading_started.wait(WAIT)
    # The first visitor leaves while a reading is under way.
    Conversation.objects.filter(pk=queued[0].pk).update(status=Status.CLOSED)
    waiting_one = threading.Thread(
        target=broadcast, args=("waiting",), kwargs={"from_conversation": queued[2].pk}
    )
    waiting_one.start()
    deadline = timezone.now() + timedelta(seconds=WAIT)
    while site.pk not in services._reading_next:
        assert timezone.now() < deadline, "the second reading never waited for the first"
        waiting_one.join(0.01)
    # A third change while that one waits: it returns at once, without a reading.
    broadcast("covered")
    finish_reading.set()
    running.join(WAIT)
    waiting_one.join(WAIT)

    assert readings == [site.pk, site.pk]
    assert outboxes["covered"] == []

    def positions(name):
        return {
            event["frame"]["conversation"]: event["frame"]["position"]
            for group, event in outboxes[name]
            if event["type"] == realtime.FRAME_EVENT
        }

    def length(name):
        [event] = [e for g, e in outboxes[name] if e["type"] == realtime.QUEUE_EVENT]
        return event["length"], event["version"]

    # The next reading, asked for the whole queue by the third caller, tells everyone
    # still waiting where they are, with a newer version than the running one's.
    assert positions("waiting") == {queued[1].pk: 1, queued[2].pk: 2}
    assert length("waiting")[0] == 2
    assert length("waiting")[1] > length("running")[1]


@pytest.mark.django_db(transaction=True)
def test_arrivals_within_the_window_of_the_last_reading_share_the_next_one(personas, monkeypatch):
    for visitor in (personas.v1, personas.v2, personas.v3):
        open_chat(visitor)  # everyone full
    site = personas.acme
    waiting = [new_visitor(site) for _ in range(3)]
    open_chat(waiting[0])  # a reading just now: the next one waits out the window
    monkeypatch.setattr(services, "QUEUE_READING_WINDOW", WAIT)
    in_window, second_arrived = threading.Event(), threading.Event()
    readings = []
    real_read_queue, real_wait = services.read_queue, services._readings.wait

    def counted_reading(site_id, starts):
        readings.append(starts)
        real_read_queue(site_id, starts)

    def window_held_open_for_the_test(timeout=None):
        if timeout is None:
            return real_wait()
        in_window.set()
        while not second_arrived.is_set():
            assert real_wait(WAIT), "nobody arrived within the window"
        services._last_reading_at[site.pk] -= WAIT  # the window is over
        return real_wait(0)

    monkeypatch.setattr(services, "read_queue", counted_reading)
    monkeypatch.setattr(services._readings, "wait", window_held_open_for_the_test)
    first_outbox = []

    def first_arrival():
        try:
            with realtime.Outbox() as events:
                open_chat(waiting[1])
            first_outbox.extend(events)
        finally:
            connection.close()  # this thread's own

    arrival = threading.Thread(target=first_arrival)
    arrival.start()
    assert in_window.wait(WAIT)
    with realtime.Outbox() as second_outbox:
        open_chat(waiting[2])  # returns at once: the waiting reading covers it
    with services._readings:
        second_arrived.set()
        services._readings.notify_all()
    arrival.join(WAIT)

    def told(events):
        return {
            e["frame"]["conversation"]: e["frame"]["position"]
            for g, e in events
            if e["type"] == realtime.FRAME_EVENT and e["frame"]["type"] == "conversation.queued"
        }

    second, third = (Conversation.objects.get(visitor=v) for v in waiting[1:])
    # One reading for both arrivals, from the first of them back; the visitor ahead of
    # them was told its place already.
    assert readings == [{second.pk, third.pk}]
    assert told(first_outbox) == {second.pk: 2, third.pk: 3}
    assert told(second_outbox) == {}
    assert [e["length"] for g, e in first_outbox if e["type"] == realtime.QUEUE_EVENT] == [3]
