"""Presence and upkeep: heartbeats, re-queueing chats of vanished agents after the grace
period, closing idle chats, and a sweep that does each piece of work once."""

import itertools
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from agents.models import AgentProfile
from chat import selectors
from chat.conversations import closing, presence, sending, sessions
from chat.conversations.actors import Actor
from chat.models import Conversation, Message, Visitor
from chat.realtime import groups

Status = Conversation.Status
_msg_ids = itertools.count(1)


def open_chat(visitor: Visitor, body: str = "Hello?") -> Conversation:
    posted = sending.post_message(
        Actor.visitor(visitor.pk), client_msg_id=f"m-{next(_msg_ids)}", body=body
    )
    return Conversation.objects.get(pk=posted.message["conversation"])


def refreshed(conversation: Conversation) -> Conversation:
    return Conversation.objects.get(pk=conversation.pk)


def last_message(conversation: Conversation) -> Message:
    return Message.objects.filter(conversation=conversation).order_by("-seq").first()


def lapse_moment(heartbeat: datetime) -> datetime:
    """The first moment at which an agent last seen at `heartbeat` loses its chats."""
    return heartbeat + timedelta(
        seconds=settings.SUPPORTDESK_HEARTBEAT_TIMEOUT + settings.SUPPORTDESK_AGENT_GRACE
    )


def lapsed_heartbeat(now: datetime) -> datetime:
    """A heartbeat old enough, at `now`, for its agent to have lost its chats."""
    return now - (lapse_moment(now) - now) - timedelta(seconds=1)


def heartbeat_of(agent: AgentProfile) -> datetime:
    return AgentProfile.objects.get(pk=agent.pk).last_heartbeat


def make_away(agent: AgentProfile) -> None:
    AgentProfile.objects.filter(pk=agent.pk).update(status=AgentProfile.Status.AWAY)


def make_idle(conversation: Conversation, since: datetime) -> None:
    """Nobody wrote in the conversation, nor was its visitor seen, since `since`."""
    Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=since)
    Visitor.objects.filter(pk=conversation.visitor_id).update(last_seen=since)


def frames_of_type(broadcasts, frame_type: str) -> list[tuple[str, dict]]:
    return [
        (group, event["frame"])
        for group, event in broadcasts
        if event["type"] == groups.FRAME_EVENT and event["frame"]["type"] == frame_type
    ]


# --- heartbeat --------------------------------------------------------------------


def test_heartbeat_refreshes_presence_of_an_active_agent(personas):
    stale = timezone.now() - timedelta(hours=1)
    AgentProfile.objects.filter(pk=personas.alice.pk).update(last_heartbeat=stale)

    assert presence.heartbeat(agent_id=personas.alice.pk) is True

    assert heartbeat_of(personas.alice) > stale + timedelta(minutes=59)


def test_heartbeat_of_a_deactivated_agent_is_refused_and_refreshes_nothing(personas):
    stale = timezone.now() - timedelta(hours=1)
    AgentProfile.objects.filter(pk=personas.alice.pk).update(last_heartbeat=stale)
    personas.alice.user.is_active = False
    personas.alice.user.save(update_fields=["is_active"])

    assert presence.heartbeat(agent_id=personas.alice.pk) is False
    assert presence.heartbeat(agent_id=personas.alice.pk, route=True) is False

    assert heartbeat_of(personas.alice) == stale


def test_heartbeat_of_a_removed_agent_is_refused(personas):
    agent_id = personas.alice.pk
    personas.alice.user.delete()

    assert presence.heartbeat(agent_id=agent_id) is False


# --- re-queueing after the grace period -------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_agent_inside_the_grace_period_keeps_the_chat(personas, capture_broadcasts):
    conversation = open_chat(personas.v1)
    assert refreshed(conversation).agent_id == personas.alice.pk
    seen = heartbeat_of(personas.alice)
    # Past the heartbeat timeout (no new chats) but not yet past the grace period.
    capture_broadcasts.clear()

    requeued = closing.requeue_lapsed_agents(now=lapse_moment(seen) - timedelta(seconds=1))

    assert requeued == []
    conversation = refreshed(conversation)
    assert (conversation.status, conversation.agent_id) == (Status.ACTIVE, personas.alice.pk)
    assert conversation.last_seq == 1
    assert list(capture_broadcasts) == []


def test_agent_past_the_timeout_but_inside_grace_gets_no_new_chat_yet_keeps_old_ones(personas):
    make_away(personas.bob)
    conversation = open_chat(personas.v1)
    stale = timezone.now() - timedelta(seconds=settings.SUPPORTDESK_HEARTBEAT_TIMEOUT + 1)
    AgentProfile.objects.filter(pk=personas.alice.pk).update(last_heartbeat=stale)

    closing.requeue_lapsed_agents()
    newcomer = open_chat(personas.v2)

    assert refreshed(conversation).agent_id == personas.alice.pk
    assert refreshed(newcomer).status == Status.QUEUED


@pytest.mark.django_db(transaction=True)
def test_agent_gone_past_the_grace_period_loses_the_chat_to_the_front_of_the_queue(
    personas, capture_broadcasts
):
    alice = personas.alice
    make_away(personas.bob)
    lost = open_chat(personas.v1)
    open_chat(personas.v2)  # alice's second slot
    waiting = open_chat(personas.v3)
    assert refreshed(waiting).status == Status.QUEUED
    # v3 has waited longer than v1's chat exists: FIFO alone would keep v3 first.
    Conversation.objects.filter(pk=waiting.pk).update(
        queued_at=refreshed(lost).queued_at - timedelta(minutes=5)
    )
    sending.post_message(
        Actor.agent(alice.pk), conversation_id=lost.pk, client_msg_id="a-1", body="Checking..."
    )
    seen = heartbeat_of(alice)
    capture_broadcasts.clear()

    requeued = closing.requeue_lapsed_agents(now=lapse_moment(seen) + timedelta(seconds=1))

    assert lost.pk in requeued
    lost = refreshed(lost)
    assert (lost.status, lost.agent_id, lost.queue_priority) == (Status.QUEUED, None, 1)
    assert selectors.queued_positions(personas.acme.pk)[0][:2] == (lost.pk, personas.v1.pk)
    assert selectors.queue_position(lost) == 1
    assert selectors.queue_position(refreshed(waiting)) == 3
    # The visitor reads why, as a system message taking the next seq.
    notice = last_message(lost)
    assert (notice.seq, notice.sender, notice.body) == (3, "system", closing.REQUEUED_TEXT)
    assert lost.last_seq == 3
    v1_group = groups.visitor_group(personas.v1.pk)
    [message] = capture_broadcasts.frames(v1_group, "message")
    assert (message["seq"], message["sender"]) == (3, "system")
    assert capture_broadcasts.frames(v1_group, "conversation.queued")[-1]["position"] == 1
    # The former agent is told the chat is no longer theirs.
    assert {"type": "conversation.requeued", "conversation": lost.pk} in (
        capture_broadcasts.frames(groups.agent_group(alice.pk), "conversation.requeued")
    )
    assert selectors.active_load(alice.pk) == 0


@pytest.mark.django_db(transaction=True)
def test_requeued_chat_goes_to_the_next_available_agent(personas, capture_broadcasts):
    make_away(personas.bob)
    lost = open_chat(personas.v1)
    AgentProfile.objects.filter(pk=personas.alice.pk).update(
        last_heartbeat=lapsed_heartbeat(timezone.now())
    )
    closing.requeue_lapsed_agents()
    capture_broadcasts.clear()

    presence.set_presence(agent_id=personas.bob.pk, status=AgentProfile.Status.AVAILABLE)

    assert refreshed(lost).agent_id == personas.bob.pk
    [assigned] = capture_broadcasts.frames(
        groups.agent_group(personas.bob.pk), "conversation.assigned"
    )
    # Bob sees the whole history, the system notice included.
    assert [m["sender"] for m in assigned["conversation"]["messages"]] == ["visitor", "system"]


@pytest.mark.django_db(transaction=True)
def test_requeued_chat_goes_straight_to_another_agent_with_room(personas, capture_broadcasts):
    lost = open_chat(personas.v1)
    assert refreshed(lost).agent_id == personas.alice.pk
    AgentProfile.objects.filter(pk=personas.alice.pk).update(
        last_heartbeat=lapsed_heartbeat(timezone.now())
    )
    capture_broadcasts.clear()

    assert closing.requeue_lapsed_agents() == [lost.pk]

    lost = refreshed(lost)
    assert (lost.status, lost.agent_id) == (Status.ACTIVE, personas.bob.pk)
    [assigned] = capture_broadcasts.frames(
        groups.visitor_group(personas.v1.pk), "conversation.assigned"
    )
    assert assigned["agent"] == {"display_name": "Bob"}


# --- idle conversations -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_idle_conversation_is_closed_by_the_system_with_a_message(personas, capture_broadcasts):
    idle = open_chat(personas.v1)
    recent = open_chat(personas.v2)
    now = timezone.now()
    make_idle(idle, now - timedelta(seconds=settings.SUPPORTDESK_INACTIVITY_TIMEOUT + 1))
    make_idle(recent, now - timedelta(seconds=settings.SUPPORTDESK_INACTIVITY_TIMEOUT - 60))
    capture_broadcasts.clear()

    closed = closing.close_idle_conversations(now=now)

    assert closed == [idle.pk]
    idle = refreshed(idle)
    assert (idle.status, idle.closed_by) == (Status.CLOSED, "system")
    notice = last_message(idle)
    assert (notice.seq, notice.sender, notice.body) == (2, "system", closing.IDLE_CLOSED_TEXT)
    closed_frames = frames_of_type(capture_broadcasts, "conversation.closed")
    assert sorted(group for group, _ in closed_frames) == sorted(
        [groups.visitor_group(personas.v1.pk), groups.agent_group(personas.alice.pk)]
    )
    assert all(
        f == {"type": "conversation.closed", "conversation": idle.pk, "by": "system"}
        for _, f in closed_frames
    )
    assert refreshed(recent).status == Status.ACTIVE


def test_quiet_conversation_stays_open_while_its_visitor_is_still_seen(personas):
    conversation = open_chat(personas.v1)
    now = timezone.now()
    long_ago = now - timedelta(seconds=settings.SUPPORTDESK_INACTIVITY_TIMEOUT + 60)
    Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=long_ago)
    sessions.touch_visitor(visitor_id=personas.v1.pk)

    assert closing.close_idle_conversations(now=now) == []

    assert refreshed(conversation).status == Status.ACTIVE


def test_idle_queued_conversation_is_closed_too(personas):
    AgentProfile.objects.update(status=AgentProfile.Status.AWAY)
    conversation = open_chat(personas.v1)
    now = timezone.now()
    make_idle(conversation, now - timedelta(seconds=settings.SUPPORTDESK_INACTIVITY_TIMEOUT + 1))

    assert closing.close_idle_conversations(now=now) == [conversation.pk]

    assert refreshed(conversation).status == Status.CLOSED
    assert selectors.queued_positions(personas.acme.pk) == []


def test_closing_an_idle_chat_frees_the_slot_for_the_oldest_queued_visitor(personas):
    make_away(personas.bob)
    idle = open_chat(personas.v1)
    open_chat(personas.v2)
    waiting = open_chat(personas.v3)
    now = timezone.now()
    make_idle(idle, now - timedelta(seconds=settings.SUPPORTDESK_INACTIVITY_TIMEOUT + 1))

    closing.close_idle_conversations(now=now)

    assert refreshed(waiting).agent_id == personas.alice.pk


# --- sweep ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_sweep_twice_does_the_work_once(personas, capture_broadcasts):
    alice = personas.alice
    make_away(personas.bob)
    lost = [open_chat(personas.v1), open_chat(personas.v2)]
    idle = open_chat(personas.v3)
    assert refreshed(idle).status == Status.QUEUED
    now = timezone.now()
    AgentProfile.objects.filter(pk=alice.pk).update(last_heartbeat=lapsed_heartbeat(now))
    make_idle(idle, now - timedelta(seconds=settings.SUPPORTDESK_INACTIVITY_TIMEOUT + 1))
    capture_broadcasts.clear()

    closing.sweep(now=now)

    assert {refreshed(c).status for c in lost} == {Status.QUEUED}
    assert refreshed(idle).status == Status.CLOSED
    messages_after_first = Message.objects.count()
    assert [last_message(c).sender for c in [*lost, idle]] == ["system"] * 3
    assert len(frames_of_type(capture_broadcasts, "conversation.requeued")) == 2
    assert len(frames_of_type(capture_broadcasts, "conversation.closed")) == 1
    capture_broadcasts.clear()

    closing.sweep(now=now)

    assert Message.objects.count() == messages_after_first
    assert list(capture_broadcasts) == []
    assert {refreshed(c).status for c in lost} == {Status.QUEUED}


def test_sweep_hands_stranded_queued_chats_to_agents_with_room(personas):
    AgentProfile.objects.update(status=AgentProfile.Status.AWAY)
    stranded = open_chat(personas.v1)
    # Alice comes back without the router hearing of it (a worker died mid-routing).
    AgentProfile.objects.filter(pk=personas.alice.pk).update(
        status=AgentProfile.Status.AVAILABLE, last_heartbeat=timezone.now()
    )

    closing.sweep()

    assert refreshed(stranded).agent_id == personas.alice.pk
