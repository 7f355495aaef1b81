"""The rules of calls against the database, no sockets: the 30-second default timeout
and the sweep that keeps it when a worker died, the races an answer, a timeout and a
hang-up run across workers, calls left behind by a transfer, TURN credentials, and an
invitation ending at once when the visitor's last widget socket (on any worker) closes."""

import base64
import hashlib
import hmac
import threading
from datetime import timedelta
from functools import partial

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.conversations import calls, closing, routing, sending, visitor_sockets
from chat.conversations.actors import Actor
from chat.errors import CallInProgress, CallNotFound
from chat.models import Call, Message, SocketWorker, VisitorSocket
from supportdesk import settings as project_settings

pytestmark = pytest.mark.django_db(transaction=True)


def chat_with_alice(personas) -> int:
    posted = sending.post_message(Actor.visitor(personas.v1.id), client_msg_id="c1", body="Hi")
    return posted.message["conversation"]


def ring(personas, *, now=None) -> tuple[int, int]:
    conversation = chat_with_alice(personas)
    placed = calls.invite(
        agent_id=personas.alice.id,
        conversation_id=conversation,
        media="video",
        channel="agent-tab",
        now=now,
    )
    return conversation, placed.call_id


def status(call_id: int) -> tuple[str, str]:
    call = Call.objects.get(pk=call_id)
    return call.status, call.end_reason


def test_an_invitation_rings_30_seconds_by_default(personas):
    assert project_settings.SUPPORTDESK_CALL_RING_TIMEOUT == 30
    now = timezone.now()
    # The visitor's widget stays open, its worker's heartbeat refreshing it.
    visitor_sockets.opened(visitor_id=personas.v1.id, channel="visitor-tab", now=now)
    visitor_sockets.heartbeat(
        sockets={"visitor-tab": personas.v1.id}, now=now + timedelta(seconds=29)
    )

    _conversation, call_id = ring(personas, now=now)

    call = Call.objects.get(pk=call_id)
    assert call.expires_at - call.invited_at == timedelta(seconds=30)
    closing.sweep(now=now + timedelta(seconds=29.9))
    assert status(call_id) == ("ringing", "")
    closing.sweep(now=now + timedelta(seconds=30))
    assert status(call_id) == ("ended", "timeout")


def test_the_answer_and_the_timeout_race_and_only_the_first_counts(personas):
    _conversation, answered = ring(personas)
    calls.accept(visitor_id=personas.v1.id, call_id=answered, channel="visitor-tab")

    assert calls.expire(call_id=answered) is False
    assert status(answered) == ("active", "")

    calls.hang_up(Actor.visitor(personas.v1.id), call_id=answered)
    _c, unanswered = ring(personas)  # a new call in the same chat
    assert calls.expire(call_id=unanswered) is True
    with pytest.raises(CallNotFound):
        calls.accept(visitor_id=personas.v1.id, call_id=unanswered, channel="visitor-tab")
    assert status(unanswered) == ("ended", "timeout")


def test_both_sides_hanging_up_end_the_call_once(personas):
    conversation, call_id = ring(personas)
    calls.accept(visitor_id=personas.v1.id, call_id=call_id, channel="visitor-tab")

    calls.hang_up(Actor.agent(personas.alice.id), call_id=call_id)
    with pytest.raises(CallNotFound):
        calls.hang_up(Actor.visitor(personas.v1.id), call_id=call_id)

    ended = Message.objects.filter(conversation_id=conversation, body__startswith="The call ended")
    assert ended.count() == 1
    assert Call.objects.get(pk=call_id).ended_by == "agent"


def test_a_socket_that_does_not_hold_the_call_does_not_end_it(personas):
    _conversation, call_id = ring(personas)

    assert calls.socket_gone(call_id=call_id, channel="some-other-tab") is False
    assert calls.socket_gone(call_id=call_id, channel="agent-tab") is True
    assert status(call_id) == ("ended", "disconnected")


def test_a_second_invitation_while_one_rings_is_refused(personas):
    conversation, _call_id = ring(personas)

    with pytest.raises(CallInProgress):
        calls.invite(
            agent_id=personas.alice.id, conversation_id=conversation, media="audio", channel="x"
        )


def test_a_transfer_leaves_no_call_behind_after_the_sweep(personas):
    conversation, call_id = ring(personas)
    calls.accept(visitor_id=personas.v1.id, call_id=call_id, channel="visitor-tab")

    routing.transfer_conversation(
        agent_id=personas.alice.id, conversation_id=conversation, to_agent_id=personas.bob.id
    )
    assert status(call_id) == ("active", "")
    closing.sweep()

    assert status(call_id) == ("ended", "disconnected")
    # Alice no longer has the chat: her call frames are refused like anyone else's.
    with pytest.raises(CallNotFound):
        calls.hang_up(Actor.agent(personas.alice.id), call_id=call_id)


def test_turn_credentials_are_what_coturns_use_auth_secret_checks(settings):
    settings.SUPPORTDESK_STUN_URLS = []
    settings.SUPPORTDESK_TURN_URLS = ["turns:turn.example.com:5349"]
    settings.SUPPORTDESK_TURN_SECRET = "north-wind"
    settings.SUPPORTDESK_TURN_TTL = 600
    now = timezone.now()

    (turn,) = calls.ice_servers(42, now=now)

    expiry, user = turn["username"].split(":")
    assert int(expiry) == int(now.timestamp()) + 600 and user == "supportdesk-c42"
    expected = hmac.new(b"north-wind", turn["username"].encode(), hashlib.sha1).digest()
    assert base64.b64decode(turn["credential"]) == expected


def test_no_turn_entry_without_a_secret(settings):
    settings.SUPPORTDESK_STUN_URLS = ["stun:stun.example.com"]
    settings.SUPPORTDESK_TURN_URLS = ["turn:turn.example.com"]
    settings.SUPPORTDESK_TURN_SECRET = ""

    assert calls.ice_servers(1, now=timezone.now()) == [{"urls": ["stun:stun.example.com"]}]


# Racing decisions on separate connections, as two workers' would.
ROUNDS = 8
WAIT = 10.0


def race(*deciders) -> list:
    """Run each decider on its own thread and connection, released at once; each one's
    result, or the exception it raised."""
    start = threading.Barrier(len(deciders))
    results: list = [None] * len(deciders)

    def run(n: int) -> None:
        try:
            start.wait(WAIT)
            results[n] = deciders[n]()
        except Exception as exc:
            results[n] = exc
        finally:
            connection.close()  # this thread's own

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(deciders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    return results


def test_an_answer_racing_the_timeout_is_decided_once(personas):
    conversation = chat_with_alice(personas)
    for _ in range(ROUNDS):
        call_id = calls.invite(
            agent_id=personas.alice.id, conversation_id=conversation, media="audio", channel="a"
        ).call_id

        answered, expired = race(
            partial(calls.accept, visitor_id=personas.v1.id, call_id=call_id, channel="v"),
            partial(calls.expire, call_id=call_id),
        )

        if expired is True:  # the timeout committed first: the answer found nothing
            assert isinstance(answered, CallNotFound)
            assert status(call_id) == ("ended", "timeout")
        else:  # the answer committed first: the timer found the call answered
            assert answered is None and expired is False
            assert status(call_id) == ("active", "")
            calls.hang_up(Actor.visitor(personas.v1.id), call_id=call_id)
    lines = Message.objects.filter(conversation_id=conversation, sender="system")
    assert (
        lines.filter(body=calls.NOT_ANSWERED_LINE).count()
        == Call.objects.filter(end_reason="timeout").count()
    )
    assert (
        lines.filter(body=calls.JOINED_LINE).count()
        == Call.objects.exclude(accepted_at=None).count()
    )


def test_both_sides_hanging_up_as_the_tab_closes_end_the_call_once(personas):
    conversation = chat_with_alice(personas)
    for _ in range(ROUNDS):
        call_id = calls.invite(
            agent_id=personas.alice.id, conversation_id=conversation, media="audio", channel="a"
        ).call_id
        calls.accept(visitor_id=personas.v1.id, call_id=call_id, channel="v")

        outcomes = race(
            partial(calls.hang_up, Actor.agent(personas.alice.id), call_id=call_id),
            partial(calls.hang_up, Actor.visitor(personas.v1.id), call_id=call_id),
            partial(calls.socket_gone, call_id=call_id, channel="v"),
        )

        won = [o for o in outcomes if o is None or o is True]
        assert len(won) == 1, outcomes
        assert all(isinstance(o, CallNotFound) or o is False for o in outcomes if o not in won)
        assert Call.objects.get(pk=call_id).status == "ended"
    ended = Message.objects.filter(conversation_id=conversation, body__startswith="The call ended")
    assert ended.count() == ROUNDS


# --- the visitor's widget sockets, counted across workers ---------------------------


def widget_open(personas, channel: str, *, visitor=None, now=None) -> str:
    visitor = visitor or personas.v1
    visitor_sockets.opened(visitor_id=visitor.id, channel=channel, now=now)
    return channel


def widget_closed(personas, channel: str) -> bool:
    """What a worker does once a visitor socket closed (chat/transport/calling.py)."""
    return calls.visitor_socket_closed(visitor_id=personas.v1.id, channel=channel)


def test_the_visitors_last_tab_closing_ends_a_ringing_call_at_once(personas):
    tab = widget_open(personas, "v1-tab")
    conversation, call_id = ring(personas)

    assert widget_closed(personas, tab) is True

    assert status(call_id) == ("ended", "disconnected")
    assert Call.objects.get(pk=call_id).ended_by == "visitor"
    lines = Message.objects.filter(conversation_id=conversation, sender="system")
    assert lines.order_by("seq").last().body == "The call ended before it was answered."


def test_a_ringing_call_keeps_ringing_while_another_tab_of_the_visitor_is_open(personas):
    first, second = widget_open(personas, "v1-tab1"), widget_open(personas, "v1-tab2")
    _conversation, call_id = ring(personas)

    assert widget_closed(personas, first) is False
    assert status(call_id) == ("ringing", "")
    assert widget_closed(personas, second) is True
    assert status(call_id) == ("ended", "disconnected")


def test_another_visitors_open_tab_does_not_keep_the_call_ringing(personas):
    tab = widget_open(personas, "v1-tab")
    widget_open(personas, "v2-tab", visitor=personas.v2)
    _conversation, call_id = ring(personas)

    assert widget_closed(personas, tab) is True
    assert status(call_id) == ("ended", "disconnected")


def test_an_answered_call_is_not_ended_by_a_tab_that_does_not_hold_it(personas):
    first, second = widget_open(personas, "v1-tab1"), widget_open(personas, "v1-tab2")
    _conversation, call_id = ring(personas)
    calls.accept(visitor_id=personas.v1.id, call_id=call_id, channel=first)

    # The other tab closing, even as the last but one, leaves the call to its holder.
    assert widget_closed(personas, second) is False
    assert status(call_id) == ("active", "")


def test_a_worker_back_from_a_long_database_outage_counts_its_open_widgets_again(personas):
    now = timezone.now()
    widget_open(personas, "v1-tab", now=now)
    widget_open(personas, "v2-tab", visitor=personas.v2, now=now)
    # The worker could not beat for longer than the TTL: a sweep forgot it and its sockets.
    closing.sweep(now=now + timedelta(seconds=16))
    assert not visitor_sockets.has_live_socket(personas.v1.id, now=now + timedelta(seconds=16))

    # Back, its next heartbeat puts back the widgets it still holds, and only those.
    later = now + timedelta(seconds=17)
    visitor_sockets.heartbeat(sockets={"v1-tab": personas.v1.id}, now=later)
    assert visitor_sockets.has_live_socket(personas.v1.id, now=later)
    assert not visitor_sockets.has_live_socket(personas.v2.id, now=later)
    # A worker's beat is one row, however many widgets it holds.
    assert SocketWorker.objects.count() == 1


def test_a_killed_workers_socket_stops_counting_after_the_ttl_and_the_sweep_ends_the_call(
    personas, settings
):
    assert project_settings.SUPPORTDESK_VISITOR_SOCKET_TTL == 15
    now = timezone.now()
    widget_open(personas, "v1-tab-on-a-killed-worker", now=now)
    _conversation, call_id = ring(personas, now=now)

    # kill -9: no close, no more heartbeats. The row counts until the TTL passes ...
    closing.sweep(now=now + timedelta(seconds=14))
    assert status(call_id) == ("ringing", "")
    assert visitor_sockets.has_live_socket(personas.v1.id, now=now + timedelta(seconds=14))
    # ... then neither counts nor stays.
    closing.sweep(now=now + timedelta(seconds=15))
    assert status(call_id) == ("ended", "disconnected")
    assert not VisitorSocket.objects.exists()


def test_an_invitation_placed_as_the_last_tab_closed_ends_at_the_next_sweep(personas):
    # The race `visitor_left` names: its check ran before the invitation committed.
    tab = widget_open(personas, "v1-tab")
    assert widget_closed(personas, tab) is False  # no call yet
    _conversation, call_id = ring(personas)
    assert status(call_id) == ("ringing", "")

    closing.sweep()

    assert status(call_id) == ("ended", "disconnected")


def test_a_tab_opening_while_a_call_rings_reads_the_invitation_and_no_one_else_does(
    personas, settings
):
    settings.SUPPORTDESK_STUN_URLS = ["stun:stun.example.com"]
    widget_open(personas, "v1-tab")
    conversation, call_id = ring(personas)

    invitation = calls.invitation_for_visitor(visitor_id=personas.v1.id)

    assert invitation == calls.Invitation(
        conversation_id=conversation,
        call_id=call_id,
        media="video",
        agent={"display_name": "Alice"},
        ice_servers=[{"urls": ["stun:stun.example.com"]}],
    )
    assert calls.invitation_for_visitor(visitor_id=personas.v2.id) is None
    calls.accept(visitor_id=personas.v1.id, call_id=call_id, channel="v1-tab")
    assert calls.invitation_for_visitor(visitor_id=personas.v1.id) is None


def test_the_last_two_tabs_closing_at_once_end_the_call_once(personas):
    conversation = chat_with_alice(personas)
    for n in range(ROUNDS):
        tabs = [widget_open(personas, f"round{n}-tab{t}") for t in range(2)]
        call_id = calls.invite(
            agent_id=personas.alice.id, conversation_id=conversation, media="audio", channel="a"
        ).call_id

        outcomes = race(*(partial(widget_closed, personas, tab) for tab in tabs))

        assert sorted(outcomes) == [False, True], outcomes
        assert status(call_id) == ("ended", "disconnected")
    lines = Message.objects.filter(conversation_id=conversation, sender="system")
    assert lines.filter(body=calls.CANCELLED_LINE).count() == ROUNDS


def test_a_tab_closing_as_another_opens_either_keeps_ringing_and_shows_it_or_ends(personas):
    conversation = chat_with_alice(personas)
    for n in range(ROUNDS):
        closing_tab = widget_open(personas, f"round{n}-old")
        call_id = calls.invite(
            agent_id=personas.alice.id, conversation_id=conversation, media="audio", channel="a"
        ).call_id

        def open_new_tab(n=n):
            widget_open(personas, f"round{n}-new")
            return calls.invitation_for_visitor(visitor_id=personas.v1.id)

        ended, invitation = race(partial(widget_closed, personas, closing_tab), open_new_tab)

        if ended is False:  # the new tab was counted: the call rings, and it shows it
            assert status(call_id) == ("ringing", "")
            assert invitation is not None and invitation.call_id == call_id
            calls.hang_up(Actor.agent(personas.alice.id), call_id=call_id)
        else:  # ended before the new tab counted: it read no call or hears `call.ended`
            assert ended is True and status(call_id) == ("ended", "disconnected")
        visitor_sockets.closed(channel=f"round{n}-new")


def test_widgets_opened_within_a_heartbeat_of_the_workers_beat_write_no_beat_of_their_own(
    personas, settings
):
    settings.SUPPORTDESK_VISITOR_SOCKET_HEARTBEAT = 5
    visitor_sockets.opened(visitor_id=personas.v1.id, channel="v1-tab")
    beaten = SocketWorker.objects.get().seen_at

    # A reconnect storm's hellos: each its socket's row, none the worker's one row (they
    # queued on its lock, each behind the commit of the one before).
    with CaptureQueriesContext(connection) as queries:
        visitor_sockets.opened(visitor_id=personas.v2.id, channel="v2-tab")

    assert not [q for q in queries if "chat_socketworker" in q["sql"]]
    assert SocketWorker.objects.get().seen_at == beaten
    assert visitor_sockets.has_live_socket(personas.v2.id)
