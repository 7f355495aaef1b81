"""Routing under a burst: what a new chat costs when everyone is full, one ranking per
routing run, the new agent's copy of a chat, and queue readings shared by the changes
made while one is under way (docs/performance.md, change 8)."""

import asyncio
import itertools
import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import AgentProfile
from chat import selectors
from chat.conversations import queue, routing, sending, sessions
from chat.conversations.actors import Actor
from chat.models import Attachment, Conversation, Message, Note, SenderKind, Site, Visitor
from chat.realtime import groups, outbox
from chat.store import sql
from chat.transport import broadcasting
from tests import ws
from tests.conftest import make_agent

Status = Conversation.Status
_msg_ids = itertools.count(1)
# A condition that must come true within this many seconds, or the test fails.
WAIT = 10.0


def open_chat(visitor: Visitor) -> Conversation:
    posted = sending.post_message(
        Actor.visitor(visitor.pk), client_msg_id=f"b-{next(_msg_ids)}", body="Hello?"
    )
    return Conversation.objects.get(pk=posted.message["conversation"])


def new_visitor(site: Site) -> Visitor:
    visitor, _token = sessions.create_visitor_session(site_key=site.key, visitor_token=None)
    return visitor


def set_status(agent: AgentProfile, status: str) -> None:
    AgentProfile.objects.filter(pk=agent.pk).update(status=status, last_heartbeat=timezone.now())


def ranking_reads(queries) -> int:
    return sum(1 for sql in statements(queries) if "AS active_load" in sql)


def statements(queries: CaptureQueriesContext) -> list[str]:
    # Statements bound on the server are recorded with no SQL (store.sql.hot_cursor).
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
    agent_reads = [s for s in statements(queries) if "agents_agentprofile" in s]
    # One look at the agents; no agent row, and no queued chat, locked to find out.
    assert len(agent_reads) == 1
    assert ranking_reads(queries) == 1
    assert not [s for s in statements(queries) if sql.QUEUE_ORDER in s and "LIMIT 1" in s]


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
        assigned = routing.assign_queued(site_ids=[personas.acme.pk])

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
    ranking = routing.Ranking(personas.acme.pk, timezone.now())
    # Bob's chat closes after the ranking was read (its own routing found nothing to do).
    Conversation.objects.filter(agent=bob).update(status=Status.CLOSED)

    with_fresh_ranking = routing.lock_agent_for(ranking)
    ranking.stale = True
    after_a_stale_one = routing.lock_agent_for(ranking)

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
    sending.post_note(
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

    routing.transfer_conversation(agent_id=alice.pk, conversation_id=chat.pk, to_agent_id=None)

    [handed] = capture_broadcasts.frames(groups.agent_group(bob.pk), "conversation.assigned")
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
        groups.agent_group(personas.alice.pk), "conversation.assigned"
    )
    assert [m["body"] for m in handed["conversation"]["messages"]] == ["Hello?"]
    assert handed["conversation"]["notes"] == []
    assert handed["conversation"]["unread"] == 1
    assert handed["conversation"]["visitor"] == {"id": personas.v1.pk}
    assert not Note.objects.filter(conversation=chat).exists()


@pytest.mark.django_db(transaction=True)
def test_a_new_chat_placed_at_once_reads_its_visitor_once_and_looks_up_no_earlier_turn(
    personas, capture_broadcasts
):
    with CaptureQueriesContext(connection) as queries:
        open_chat(personas.v1)

    [handed] = capture_broadcasts.frames(
        groups.agent_group(personas.alice.pk), "conversation.assigned"
    )
    # The dashboard's "Alice joined" line, after the visitor's first message.
    assert handed["conversation"]["joins"] == [
        {"agent": {"display_name": personas.alice.display_name}, "after_seq": 1}
    ]
    # The visitor's row locked to open the chat is the one its agent is shown.
    assert len([s for s in statements(queries) if "FROM chat_visitor" in s]) == 1
    assert not [s for s in statements(queries) if 'FROM "chat_assignment"' in s]


# --- queue readings shared by the changes made meanwhile ----------------------------


class RecordedReadings:
    """`queue.read_queue`, recording each reading (its site, `starts` and what it
    announced) and, with `hold_first`, holding the first until `release()`."""

    def __init__(self, monkeypatch, *, hold_first: bool = False) -> None:
        self.made: list[tuple[int, set[int] | None, list]] = []
        self.first_started = asyncio.Event()
        self.released = threading.Event()
        real, loop = queue.read_queue, asyncio.get_running_loop()

        def read_queue(site_id, starts):
            with outbox.Outbox() as announced:
                self.made.append((site_id, None if starts is None else set(starts), announced))
                if hold_first and len(self.made) == 1:
                    loop.call_soon_threadsafe(self.first_started.set)
                    assert self.released.wait(WAIT)
                real(site_id, starts)

        monkeypatch.setattr(queue, "read_queue", read_queue)

    def release(self) -> None:
        self.released.set()


def told(announced: list) -> dict[int, int]:
    return {
        e["frame"]["conversation"]: e["frame"]["position"]
        for g, e in announced
        if e["type"] == groups.FRAME_EVENT and e["frame"]["type"] == "conversation.queued"
    }


def length(announced: list) -> list[tuple[int, int]]:
    return [(e["length"], e["version"]) for g, e in announced if e["type"] == groups.QUEUE_EVENT]


@pytest.mark.django_db(transaction=True)
async def test_changes_made_during_a_reading_share_one_next_reading_with_right_positions(
    personas, monkeypatch
):
    for visitor in (personas.v1, personas.v2, personas.v3):
        await ws.db(open_chat, visitor)  # everyone full
    site = personas.acme
    waiting = [await ws.db(new_visitor, site) for _ in range(3)]
    queued = [await ws.db(open_chat, v) for v in waiting]
    readings = broadcasting.queue_readings()
    await readings.settled()
    recorded = RecordedReadings(monkeypatch, hold_first=True)
    try:
        readings.request({site.pk: None})
        await asyncio.wait_for(recorded.first_started.wait(), WAIT)
        # The first visitor leaves while a reading is under way; a change behind it asks
        # for a reading, and one more change for the whole queue while that one waits.
        await ws.db(Conversation.objects.filter(pk=queued[0].pk).update, status=Status.CLOSED)
        readings.request({site.pk: {queued[2].pk}})
        readings.request({site.pk: None})
    finally:
        recorded.release()
    await readings.settled()

    # Two readings, not three: the last request was covered by the one waiting.
    assert [(site_id, starts) for site_id, starts, _ in recorded.made] == [
        (site.pk, None),
        (site.pk, None),
    ]
    running, waited = recorded.made[0][2], recorded.made[1][2]
    # The next reading tells everyone still waiting where they are, with a newer
    # version than the running one's.
    assert told(waited) == {queued[1].pk: 1, queued[2].pk: 2}
    assert length(waited)[0][0] == 2
    assert length(waited)[0][1] > length(running)[0][1]


@pytest.mark.django_db(transaction=True)
async def test_arrivals_within_the_window_of_the_last_reading_share_the_next_one(
    personas, monkeypatch
):
    for visitor in (personas.v1, personas.v2, personas.v3):
        await ws.db(open_chat, visitor)  # everyone full
    site = personas.acme
    waiting = [await ws.db(new_visitor, site) for _ in range(3)]
    readings = broadcasting.queue_readings()
    await ws.run_service(open_chat, waiting[0])  # a reading just now
    await readings.settled()
    monkeypatch.setattr(queue, "QUEUE_READING_WINDOW", WAIT)
    window_entered, window_over = asyncio.Event(), asyncio.Event()

    async def window_held_open_for_the_test(seconds):
        window_entered.set()
        await window_over.wait()

    monkeypatch.setattr(readings, "sleep", window_held_open_for_the_test)
    recorded = RecordedReadings(monkeypatch)

    await ws.run_service(open_chat, waiting[1])
    await asyncio.wait_for(window_entered.wait(), WAIT)
    await ws.run_service(open_chat, waiting[2])  # the waiting reading covers it
    window_over.set()
    await readings.settled()

    second, third = [await ws.db(Conversation.objects.get, visitor=v) for v in waiting[1:]]
    # One reading for both arrivals, from the first of them back; the visitor ahead of
    # them was told its place already.
    [(_site, starts, announced)] = recorded.made
    assert starts == {second.pk, third.pk}
    assert told(announced) == {second.pk: 2, third.pk: 3}
    assert [n for n, _version in length(announced)] == [3]
