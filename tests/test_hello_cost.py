"""What a visitor's `hello` costs the database: a reconnect storm after a deploy is one
`hello` per open widget (docs/performance.md, change 18)."""

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.conversations import ratings, sending
from chat.conversations.actors import Actor
from chat.conversations.sessions import identify_visitor
from chat.models import Visitor
from chat.realtime.resume import visitor_ready
from chat.transport import hello


def resume(personas, visitor, last_seq):
    """The database work of one `hello`: who it is, then the state it resumes from."""
    site, found = identify_visitor(
        site_key=personas.acme.key, visitor_token=personas.token(visitor)
    )
    return visitor_ready(found, last_seq, sneak_peek=site.sneak_peek)


def test_an_up_to_date_widget_resumes_in_four_reads_and_writes_nothing(personas):
    sending.post_message(Actor.visitor(personas.v1.pk), client_msg_id="a", body="Hi")
    resume(personas, personas.v1, 1)  # last_seen fresh, as after any hello
    with CaptureQueriesContext(connection) as statements:
        ready = resume(personas, personas.v1, 1)
    sql = [q["sql"].split()[0] for q in statements.captured_queries]
    assert sql == ["SELECT"] * 4
    assert ready["conversation"]["last_seq"] == 1
    assert ready["messages"] == []


def test_a_widget_behind_gets_the_messages_it_lacks_and_its_rating(personas):
    for n in range(3):
        sending.post_message(Actor.visitor(personas.v1.pk), client_msg_id=f"m{n}", body="Hi")
    ratings.rate_conversation(visitor_id=personas.v1.pk, score=4)
    ready = resume(personas, personas.v1, 1)
    assert [m["seq"] for m in ready["messages"]] == [2, 3]
    assert ready["conversation"]["rating"] == 4


def test_hello_refreshes_last_seen_only_when_over_a_minute_old(personas):
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Visitor.objects.filter(pk=personas.v1.pk).update(last_seen=an_hour_ago)
    resume(personas, personas.v1, 0)
    seen = Visitor.objects.get(pk=personas.v1.pk).last_seen
    assert seen > timezone.now() - timedelta(minutes=1)
    with CaptureQueriesContext(connection) as statements:
        resume(personas, personas.v1, 0)
    assert not any(q["sql"].startswith("UPDATE") for q in statements.captured_queries)
    assert Visitor.objects.get(pk=personas.v1.pk).last_seen == seen


def statements(work, /, *args, **kwargs) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        work(*args, **kwargs)
    return [q["sql"].split()[0] for q in captured.captured_queries]


def test_counting_the_socket_costs_two_inserts_and_in_a_chat_with_its_agent_one_read(personas):
    """The socket's row (chat/conversations/visitor_sockets.py) rides on `ready`'s trip;
    the ringing call is looked for only where one can ring: a chat with its agent."""
    sending.post_message(Actor.visitor(personas.v1.pk), client_msg_id="a", body="Hi")  # alice's
    for visitor in (personas.v1, personas.v2):  # v2 never wrote: no chat
        resume(personas, visitor, 0)
        site, found = identify_visitor(
            site_key=personas.acme.key, visitor_token=personas.token(visitor)
        )
        ready_alone = statements(visitor_ready, found, 1, sneak_peek=site.sneak_peek)
        counted = statements(
            hello.counted_and_resumed,
            found,
            1,
            channel=f"{visitor.pk}-tab",
            sneak_peek=site.sneak_peek,
        )
        # The worker's beat (an upsert) and the socket's row.
        assert counted[:2] == ["INSERT", "INSERT"]
        assert counted[2 : 2 + len(ready_alone)] == ready_alone
        extra = counted[2 + len(ready_alone) :]
        assert extra == (["SELECT"] if visitor == personas.v1 else []), visitor
