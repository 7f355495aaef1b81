"""A visitor's `hello` read on the worker's event loop (PostgreSQL only: chat/store/loop.py,
docs/performance.md change 23) answers exactly as the ORM path does, and hands the
cases it does not answer back to it.

`make test` runs these in its PostgreSQL pass (tests/on_postgresql.py)."""

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from agents.models import AgentProfile
from chat import selectors
from chat.conversations import closing, ratings, sending, sessions, visitor_sockets
from chat.conversations.actors import Actor
from chat.models import Conversation, Site, Visitor
from chat.realtime import resume
from chat.store import loop
from tests.conftest import make_visitor

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="a hello reads on the event loop only on PostgreSQL (make test's PostgreSQL pass)",
    ),
]


@pytest.fixture
def loop_statements(monkeypatch) -> list[str]:
    """The statements run on the event loop from now on (chat/store/loop.py)."""
    statements = []
    fetch_one = loop.fetch_one

    async def counted(sql, params):
        statements.append(sql)
        return await fetch_one(sql, params)

    monkeypatch.setattr(loop, "fetch_one", counted)
    return statements


def identify_on_loop(site_key: str, token: str):
    return async_to_sync(sessions.identify_on_loop)(site_key=site_key, visitor_token=token)


def ready_both_ways(personas, visitor: Visitor, last_seq: int) -> dict:
    """The `ready` of one hello by the ORM path and on the loop, which must agree."""
    site, found = sessions.identify_visitor(
        site_key=personas.acme.key, visitor_token=personas.token(visitor)
    )
    loop_site, loop_visitor = identify_on_loop(personas.acme.key, personas.token(visitor))
    assert (loop_site.pk, loop_site.allowed_origins, loop_site.sneak_peek) == (
        site.pk,
        site.allowed_origins,
        site.sneak_peek,
    )
    assert loop_visitor.pk == found.pk
    for field in ("site_id", "email", "page_url", "page_title", "referrer", "user_agent"):
        assert getattr(loop_visitor, field) == getattr(found, field)
    expected = resume.visitor_ready(found, last_seq, sneak_peek=site.sneak_peek)
    on_loop = async_to_sync(resume.visitor_ready_on_loop)(
        loop_visitor, last_seq, sneak_peek=loop_site.sneak_peek
    )
    assert on_loop == expected
    return on_loop


def test_a_visitor_without_a_chat_resumes_as_on_the_orm_path(personas):
    ready = ready_both_ways(personas, personas.v1, 0)
    assert ready["conversation"] is None
    assert ready["agents_online"] is True


def test_an_active_chat_resumes_with_its_agent_turns_and_the_messages_it_lacks(personas):
    visitor = Actor.visitor(personas.v1.pk)
    posted = sending.post_message(visitor, client_msg_id="v1", body="Hello")
    conversation_id = posted.conversation_id
    alice = Actor.agent(personas.alice.pk)
    for n in range(3):
        sending.post_message(
            alice, conversation_id=conversation_id, client_msg_id=f"a{n}", body=f"Hi {n}"
        )
    sending.post_message(visitor, client_msg_id="v2", body="Thanks")

    for last_seq in (0, 1, 3, 5):
        ready = ready_both_ways(personas, personas.v1, last_seq)
        assert [m["seq"] for m in ready["messages"]] == list(range(last_seq + 1, 6))
    ready = ready_both_ways(personas, personas.v1, 2)
    assert ready["conversation"]["agent"] == {"display_name": "Alice"}
    assert ready["conversation"]["joins"][0]["agent"] == {"display_name": "Alice"}
    assert ready["messages"][0]["agent"] == {"id": personas.alice.pk, "display_name": "Alice"}


def test_a_closed_and_rated_chat_resumes_with_its_rating(personas):
    posted = sending.post_message(Actor.visitor(personas.v1.pk), client_msg_id="v1", body="Hi")
    closing.close_conversation(
        Actor.agent(personas.alice.pk), conversation_id=posted.conversation_id
    )
    ratings.rate_conversation(visitor_id=personas.v1.pk, score=4)
    ready = ready_both_ways(personas, personas.v1, 0)
    assert ready["conversation"]["status"] == "closed"
    assert ready["conversation"]["rating"] == 4


def test_agents_online_is_read_as_present_agents_reads_it(personas):
    other = Site.objects.create(name="other", allowed_origins=["https://other.example"])
    agents = AgentProfile.objects.filter(pk__in=[personas.alice.pk, personas.bob.pk])

    def check(expected: bool) -> None:
        assert selectors.agents_online(personas.acme.pk) is expected
        assert ready_both_ways(personas, personas.v1, 0)["agents_online"] is expected

    check(True)
    personas.bob.sites.add(other)  # bob serves another site only
    agents.filter(pk=personas.alice.pk).update(status=AgentProfile.Status.AWAY)
    check(False)
    personas.bob.sites.add(personas.acme)
    check(True)
    agents.update(last_heartbeat=timezone.now() - timedelta(hours=1))
    check(False)
    agents.update(last_heartbeat=timezone.now(), capacity=0)
    check(False)
    agents.update(capacity=1)
    get_user_model().objects.filter(pk=personas.bob.user_id).update(is_active=False)
    check(False)


def test_what_the_loop_does_not_answer_goes_the_orm_path(personas):
    # A queued chat: its position and wait are the queue's to read.
    AgentProfile.objects.update(status=AgentProfile.Status.AWAY)
    sending.post_message(Actor.visitor(personas.v1.pk), client_msg_id="v1", body="Hello")
    assert Conversation.objects.get(visitor=personas.v1).status == "queued"
    _site, visitor = identify_on_loop(personas.acme.key, personas.token(personas.v1))
    assert async_to_sync(resume.visitor_ready_on_loop)(visitor, 0, sneak_peek=False) is None
    # An unknown token, or a disabled site: the ORM path makes the refusal.
    assert identify_on_loop(personas.acme.key, "not-a-token") is None
    assert identify_on_loop("not-a-site", personas.token(personas.v2)) is None
    Site.objects.filter(pk=personas.acme.pk).update(enabled=False)
    assert identify_on_loop(personas.acme.key, personas.token(personas.v2)) is None


def test_another_device_of_a_verified_user_is_the_users_record(personas):
    device, token = make_visitor(personas.acme)
    Visitor.objects.filter(pk=device.pk).update(merged_into=personas.v1)
    _site, visitor = identify_on_loop(personas.acme.key, token)
    assert visitor.pk == personas.v1.pk


def test_the_loop_refreshes_last_seen_only_when_over_a_minute_old(personas, loop_statements):
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Visitor.objects.filter(pk=personas.v1.pk).update(last_seen=an_hour_ago)
    identify_on_loop(personas.acme.key, personas.token(personas.v1))
    seen = Visitor.objects.get(pk=personas.v1.pk).last_seen
    assert seen > timezone.now() - timedelta(minutes=1)
    # Read and refreshed in one statement (after a deploy, most widgets' is old).
    assert len(loop_statements) == 1
    identify_on_loop(personas.acme.key, personas.token(personas.v1))
    assert Visitor.objects.get(pk=personas.v1.pk).last_seen == seen


def test_the_loop_refreshes_the_record_another_device_was_merged_into(personas):
    device, token = make_visitor(personas.acme)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Visitor.objects.filter(pk=device.pk).update(merged_into=personas.v1, last_seen=an_hour_ago)
    Visitor.objects.filter(pk=personas.v1.pk).update(last_seen=an_hour_ago)

    identify_on_loop(personas.acme.key, token)

    assert Visitor.objects.get(pk=personas.v1.pk).last_seen > an_hour_ago
    assert Visitor.objects.get(pk=device.pk).last_seen == an_hour_ago


def test_the_loop_refreshes_nobody_on_a_disabled_site(personas):
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Visitor.objects.filter(pk=personas.v1.pk).update(last_seen=an_hour_ago)
    Site.objects.filter(pk=personas.acme.pk).update(enabled=False)

    assert identify_on_loop(personas.acme.key, personas.token(personas.v1)) is None
    assert Visitor.objects.get(pk=personas.v1.pk).last_seen == an_hour_ago


async def test_a_hello_counts_its_socket_in_the_statement_that_reads_its_ready(
    personas, sockets, loop_statements
):
    _tab, ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1), last_seq=0)

    assert ready["type"] == "ready"
    # The visitor (its last_seen refreshed if old), then its `ready` with the socket
    # counted: two round trips for a widget that lacks no message.
    assert len(loop_statements) == 2
    assert await database_sync_to_async(visitor_sockets.has_live_socket)(personas.v1.pk)


async def test_a_sockets_hello_makes_no_trip_to_an_orm_thread(personas, sockets, monkeypatch):
    def not_here(*args, **kwargs):
        raise AssertionError("a hello the loop answers took the ORM path")

    monkeypatch.setattr(sessions, "identify_visitor", not_here)
    monkeypatch.setattr(resume, "visitor_ready", not_here)
    _tab, ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1), last_seq=0)
    assert ready["type"] == "ready"
    assert ready["visitor"]["id"] == personas.v1.pk
