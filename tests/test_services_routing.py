"""Routing rules: who gets a new chat, who waits, and in which order the queue drains."""

import itertools
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from agents.models import AgentProfile
from chat import selectors
from chat.conversations import closing, presence, routing, sending, sessions
from chat.conversations.actors import Actor
from chat.models import Conversation, Site, Visitor
from chat.realtime import groups

Status = Conversation.Status
_msg_ids = itertools.count(1)


def open_chat(visitor: Visitor) -> Conversation:
    """The visitor writes a first message, which opens (and routes) a conversation."""
    posted = sending.post_message(
        Actor.visitor(visitor.pk), client_msg_id=f"m-{next(_msg_ids)}", body="Hello?"
    )
    return Conversation.objects.get(pk=posted.message["conversation"])


def new_visitor(site: Site) -> Visitor:
    visitor, _token = sessions.create_visitor_session(site_key=site.key, visitor_token=None)
    return visitor


def make_away(agent: AgentProfile) -> None:
    AgentProfile.objects.filter(pk=agent.pk).update(status=AgentProfile.Status.AWAY)


def refreshed(conversation: Conversation) -> Conversation:
    return Conversation.objects.get(pk=conversation.pk)


def load(agent: AgentProfile) -> int:
    return selectors.active_load(agent.pk)


def positions(site: Site) -> dict[int, int]:
    """conversation id -> queue position, straight from the database."""
    return {conv: pos for conv, _visitor, pos in selectors.queued_positions(site.pk)}


def queued_frames(broadcasts, visitor: Visitor) -> list[dict]:
    return broadcasts.frames(groups.visitor_group(visitor.pk), "conversation.queued")


def unversioned(frames: list[dict]) -> list[dict]:
    """The frames without their `queue_version` (a clock reading; see its own tests)."""
    return [{k: v for k, v in frame.items() if k != "queue_version"} for frame in frames]


def assigned_frames(broadcasts, visitor: Visitor) -> list[dict]:
    return broadcasts.frames(groups.visitor_group(visitor.pk), "conversation.assigned")


# --- who gets a new chat ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_chat_taken_at_once_was_opened_queued_and_assigned_at_one_instant(personas):
    # Seen in the admin: assigned_at 233006 µs, created_at 233745 µs, so a negative wait.
    conversation = open_chat(personas.v1)

    assert conversation.status == Status.ACTIVE
    assert conversation.created_at == conversation.queued_at == conversation.assigned_at
    first = conversation.messages.get(seq=1)
    assert first.created_at == conversation.created_at == conversation.last_activity_at


def test_new_chat_goes_to_the_least_loaded_agent_even_if_another_idled_longer(personas):
    alice, bob = personas.alice, personas.bob
    AgentProfile.objects.filter(pk=bob.pk).update(capacity=3)
    make_away(alice)
    first = open_chat(personas.v1)
    assert refreshed(first).agent_id == bob.pk
    presence.set_presence(agent_id=alice.pk, status=AgentProfile.Status.AVAILABLE)
    # Bob idled far longer than alice, but he already has a chat and she has none.
    now = timezone.now()
    AgentProfile.objects.filter(pk=bob.pk).update(last_assigned_at=now - timedelta(hours=2))
    AgentProfile.objects.filter(pk=alice.pk).update(last_assigned_at=now - timedelta(minutes=1))

    second = open_chat(personas.v2)

    assert refreshed(second).agent_id == alice.pk
    assert (load(alice), load(bob)) == (1, 1)


def test_equally_loaded_agents_give_the_new_chat_to_the_one_idle_longest(personas):
    now = timezone.now()
    # Alice sorts first by id, so only the tie-break can hand the chat to bob.
    AgentProfile.objects.filter(pk=personas.alice.pk).update(
        last_assigned_at=now - timedelta(minutes=1)
    )
    AgentProfile.objects.filter(pk=personas.bob.pk).update(
        last_assigned_at=now - timedelta(hours=1)
    )

    conversation = open_chat(personas.v1)

    conversation = refreshed(conversation)
    assert conversation.status == Status.ACTIVE
    assert conversation.agent_id == personas.bob.pk
    personas.bob.refresh_from_db()
    assert personas.bob.last_assigned_at >= now


def test_chats_spread_over_agents_until_everyone_is_full(personas):
    alice, bob = personas.alice, personas.bob

    chats = [open_chat(v) for v in (personas.v1, personas.v2, personas.v3)]
    fourth = open_chat(new_visitor(personas.acme))

    # v1: tie, alice first by id; v2: bob has fewer; v3: only alice has room left.
    assert [refreshed(c).agent_id for c in chats] == [alice.pk, bob.pk, alice.pk]
    assert refreshed(fourth).status == Status.QUEUED
    assert (load(alice), load(bob)) == (2, 1)


def _make_alice_unroutable(personas, how: str) -> None:
    alice = personas.alice
    if how == "routable":
        return
    if how == "away":
        make_away(alice)
    elif how == "stale_heartbeat":
        stale = timezone.now() - timedelta(seconds=settings.SUPPORTDESK_HEARTBEAT_TIMEOUT + 1)
        AgentProfile.objects.filter(pk=alice.pk).update(last_heartbeat=stale)
    elif how == "no_heartbeat_ever":
        AgentProfile.objects.filter(pk=alice.pk).update(last_heartbeat=None)
    elif how == "inactive_user":
        alice.user.is_active = False
        alice.user.save(update_fields=["is_active"])
    elif how == "serves_another_site":
        alice.sites.set([Site.objects.create(name="globex", allowed_origins=[])])
    else:  # pragma: no cover - a typo in the parametrisation
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    ["away", "stale_heartbeat", "no_heartbeat_ever", "inactive_user", "serves_another_site"],
)
def test_unroutable_agent_gets_no_new_chat_and_the_visitor_waits(personas, how):
    make_away(personas.bob)
    _make_alice_unroutable(personas, how)

    conversation = refreshed(open_chat(personas.v1))

    assert conversation.status == Status.QUEUED
    assert conversation.agent_id is None
    assert load(personas.alice) == 0
    # Nor does a later pass of the router change its mind.
    assert routing.assign_queued() == []


def test_routable_agent_in_the_same_setup_does_get_the_chat(personas):
    # The control for the test above: only the unroutable condition keeps alice out.
    make_away(personas.bob)
    _make_alice_unroutable(personas, "routable")

    conversation = refreshed(open_chat(personas.v1))

    assert conversation.status == Status.ACTIVE
    assert conversation.agent_id == personas.alice.pk


def test_agent_serving_the_site_explicitly_gets_its_chats(personas):
    make_away(personas.bob)
    other = Site.objects.create(name="globex", allowed_origins=[])
    personas.alice.sites.set([other, personas.acme])

    conversation = refreshed(open_chat(personas.v1))

    assert conversation.agent_id == personas.alice.pk


def test_heartbeat_just_inside_the_timeout_still_counts_as_present(personas):
    make_away(personas.bob)
    recent = timezone.now() - timedelta(seconds=settings.SUPPORTDESK_HEARTBEAT_TIMEOUT - 5)
    AgentProfile.objects.filter(pk=personas.alice.pk).update(last_heartbeat=recent)

    conversation = refreshed(open_chat(personas.v1))

    assert conversation.agent_id == personas.alice.pk


# --- the queue --------------------------------------------------------------------


def _fill_every_agent(personas) -> list[Conversation]:
    """v1..v3 take alice's two slots and bob's one."""
    chats = [open_chat(v) for v in (personas.v1, personas.v2, personas.v3)]
    assert all(refreshed(c).status == Status.ACTIVE for c in chats)
    return chats


@pytest.mark.django_db(transaction=True)
def test_when_every_agent_is_full_visitors_queue_fifo_and_each_hears_its_position(
    personas, capture_broadcasts
):
    _fill_every_agent(personas)
    waiting = [new_visitor(personas.acme) for _ in range(3)]
    capture_broadcasts.clear()

    queued = [open_chat(v) for v in waiting]

    assert all(refreshed(c).status == Status.QUEUED for c in queued)
    assert positions(personas.acme) == {queued[0].pk: 1, queued[1].pk: 2, queued[2].pk: 3}
    for n, (visitor, conversation) in enumerate(zip(waiting, queued, strict=True), start=1):
        assert unversioned(queued_frames(capture_broadcasts, visitor)) == [
            {
                "type": "conversation.queued",
                "conversation": conversation.pk,
                "position": n,
                # No chat handled here yet: the site's typical chat (5 minutes) per
                # place in line, over the three slots.
                "estimated_wait_seconds": 100 * n,
            }
        ]
    # Agents hear how long the queue is.
    lengths = [
        event["length"]
        for group, event in capture_broadcasts
        if group == groups.AGENTS_GROUP and event["type"] == groups.QUEUE_EVENT
    ]
    assert lengths[-1] == 3


@pytest.mark.django_db(transaction=True)
def test_positions_move_up_when_a_visitor_ahead_leaves_the_queue(personas, capture_broadcasts):
    _fill_every_agent(personas)
    waiting = [new_visitor(personas.acme) for _ in range(3)]
    queued = [open_chat(v) for v in waiting]
    capture_broadcasts.clear()

    closing.close_conversation(Actor.visitor(waiting[0].pk))

    assert refreshed(queued[0]).status == Status.CLOSED
    assert positions(personas.acme) == {queued[1].pk: 1, queued[2].pk: 2}
    assert queued_frames(capture_broadcasts, waiting[1])[-1]["position"] == 1
    assert queued_frames(capture_broadcasts, waiting[2])[-1]["position"] == 2
    # Leaving the queue assigns nobody: no agent had a slot.
    assert all(refreshed(c).status != Status.ACTIVE for c in queued)


@pytest.mark.django_db(transaction=True)
def test_freed_slot_goes_to_the_oldest_queued_chat_and_the_rest_move_up(
    personas, capture_broadcasts
):
    alice = personas.alice
    chats = _fill_every_agent(personas)
    waiting = [new_visitor(personas.acme) for _ in range(3)]
    queued = [open_chat(v) for v in waiting]
    capture_broadcasts.clear()

    closing.close_conversation(Actor.agent(alice.pk), conversation_id=chats[0].pk)

    oldest = refreshed(queued[0])
    assert oldest.status == Status.ACTIVE
    assert oldest.agent_id == alice.pk
    assert load(alice) == 2
    assert [f["agent"] for f in assigned_frames(capture_broadcasts, waiting[0])] == [
        {"display_name": "Alice"}
    ]
    assert positions(personas.acme) == {queued[1].pk: 1, queued[2].pk: 2}
    assert queued_frames(capture_broadcasts, waiting[1])[-1]["position"] == 1
    assert queued_frames(capture_broadcasts, waiting[2])[-1]["position"] == 2


@pytest.mark.django_db(transaction=True)
def test_third_visitor_waits_in_queue_and_gets_alice_when_v1_closes(personas, capture_broadcasts):
    make_away(personas.bob)
    first, second = open_chat(personas.v1), open_chat(personas.v2)

    third = open_chat(personas.v3)

    assert [refreshed(c).agent_id for c in (first, second)] == [personas.alice.pk] * 2
    assert refreshed(third).status == Status.QUEUED
    assert unversioned(queued_frames(capture_broadcasts, personas.v3)) == [
        {
            "type": "conversation.queued",
            "conversation": third.pk,
            "position": 1,
            # No chat handled here yet: the site's typical chat (5 minutes) over alice's
            # two slots.
            "estimated_wait_seconds": 150,
        }
    ]
    assert assigned_frames(capture_broadcasts, personas.v3) == []

    closing.close_conversation(Actor.visitor(personas.v1.pk))

    third = refreshed(third)
    assert third.status == Status.ACTIVE
    assert third.agent_id == personas.alice.pk
    [assigned] = assigned_frames(capture_broadcasts, personas.v3)
    assert assigned["conversation"]["id"] == third.pk
    assert assigned["agent"] == {"display_name": "Alice"}
    # Alice hears about her new chat, with its history.
    [agent_copy] = [
        f
        for f in capture_broadcasts.frames(
            groups.agent_group(personas.alice.pk), "conversation.assigned"
        )
        if f["conversation"]["id"] == third.pk
    ]
    assert [m["body"] for m in agent_copy["conversation"]["messages"]] == ["Hello?"]


@pytest.mark.django_db(transaction=True)
def test_agent_switching_to_available_takes_the_oldest_queued_chat(personas, capture_broadcasts):
    make_away(personas.bob)
    open_chat(personas.v1)
    open_chat(personas.v2)
    v4 = new_visitor(personas.acme)
    older, newer = open_chat(personas.v3), open_chat(v4)
    capture_broadcasts.clear()

    presence.set_presence(agent_id=personas.bob.pk, status=AgentProfile.Status.AVAILABLE)

    assert refreshed(older).agent_id == personas.bob.pk
    assert refreshed(newer).status == Status.QUEUED
    assert len(assigned_frames(capture_broadcasts, personas.v3)) == 1
    assert queued_frames(capture_broadcasts, v4)[-1]["position"] == 1


@pytest.mark.django_db(transaction=True)
def test_raising_capacity_hands_the_oldest_queued_chat_to_that_agent(personas, capture_broadcasts):
    make_away(personas.bob)
    open_chat(personas.v1)
    open_chat(personas.v2)
    v4 = new_visitor(personas.acme)
    older, newer = open_chat(personas.v3), open_chat(v4)
    capture_broadcasts.clear()

    presence.set_capacity(agent_id=personas.alice.pk, capacity=3)

    assert refreshed(older).agent_id == personas.alice.pk
    assert refreshed(newer).status == Status.QUEUED
    assert load(personas.alice) == 3
    assert queued_frames(capture_broadcasts, v4)[-1]["position"] == 1


@pytest.mark.django_db(transaction=True)
def test_agent_connecting_with_a_fresh_heartbeat_takes_the_oldest_queued_chat(
    personas, capture_broadcasts
):
    # Bob is available but his last socket went away a while ago.
    stale = timezone.now() - timedelta(seconds=settings.SUPPORTDESK_HEARTBEAT_TIMEOUT + 10)
    AgentProfile.objects.filter(pk=personas.bob.pk).update(last_heartbeat=stale)
    open_chat(personas.v1)
    open_chat(personas.v2)
    v4 = new_visitor(personas.acme)
    older, newer = open_chat(personas.v3), open_chat(v4)
    assert refreshed(older).status == Status.QUEUED
    capture_broadcasts.clear()

    assert presence.heartbeat(agent_id=personas.bob.pk, route=True) is True

    assert refreshed(older).agent_id == personas.bob.pk
    assert refreshed(newer).status == Status.QUEUED
    assert queued_frames(capture_broadcasts, v4)[-1]["position"] == 1


@pytest.mark.django_db(transaction=True)
def test_repeated_assign_queued_never_exceeds_capacity_nor_assigns_a_chat_twice(
    personas, capture_broadcasts
):
    alice, bob = personas.alice, personas.bob
    make_away(alice)
    make_away(bob)
    visitors = [personas.v1, personas.v2, personas.v3] + [
        new_visitor(personas.acme) for _ in range(3)
    ]
    chats = [open_chat(v) for v in visitors]
    # Both come back without the router noticing (as after a worker died mid-routing).
    AgentProfile.objects.filter(pk__in=[alice.pk, bob.pk]).update(
        status=AgentProfile.Status.AVAILABLE, last_heartbeat=timezone.now()
    )
    capture_broadcasts.clear()

    first_pass = routing.assign_queued()
    later_passes = [routing.assign_queued() for _ in range(3)]

    assert first_pass == [c.pk for c in chats[:3]]
    assert later_passes == [[], [], []]
    assert (load(alice), load(bob)) == (alice.capacity, bob.capacity)
    for visitor, conversation in zip(visitors[:3], chats[:3], strict=True):
        assert len(assigned_frames(capture_broadcasts, visitor)) == 1
        assert refreshed(conversation).status == Status.ACTIVE
    assert positions(personas.acme) == {c.pk: n for n, c in enumerate(chats[3:], start=1)}


def test_agent_filled_after_the_ranking_is_skipped_under_the_row_lock(personas, monkeypatch):
    # The race the router guards against: another worker fills bob's last slot between
    # our unlocked ranking and our row lock. Simulate it with a ranking that still
    # offers bob although he is full; the load counted under the lock must refuse him.
    alice, bob = personas.alice, personas.bob
    make_away(alice)
    open_chat(personas.v1)
    assert load(bob) == bob.capacity
    stale_ranking = [(bob.pk, bob.capacity, 0)]  # (agent, capacity, load): bob looks free
    monkeypatch.setattr(selectors, "present_agent_loads", lambda site_id, now=None: stale_ranking)

    waiting = refreshed(open_chat(personas.v2))

    assert waiting.status == Status.QUEUED
    assert load(bob) == bob.capacity


@pytest.mark.django_db(transaction=True)
def test_chat_requeued_after_its_agent_vanished_goes_to_the_front_of_the_queue(
    personas, capture_broadcasts
):
    alice, bob = personas.alice, personas.bob
    chats = _fill_every_agent(personas)
    bobs_chat = chats[1]
    assert refreshed(bobs_chat).agent_id == bob.pk
    waiting = [new_visitor(personas.acme) for _ in range(2)]
    queued = [open_chat(v) for v in waiting]
    # These visitors have waited longer than bob's chat exists, so plain FIFO would
    # put them first: only the re-queue priority puts bob's chat ahead of them.
    long_ago = refreshed(bobs_chat).queued_at - timedelta(minutes=5)
    Conversation.objects.filter(pk__in=[c.pk for c in queued]).update(queued_at=long_ago)
    lapsed = timezone.now() - timedelta(
        seconds=settings.SUPPORTDESK_HEARTBEAT_TIMEOUT + settings.SUPPORTDESK_AGENT_GRACE + 1
    )
    AgentProfile.objects.filter(pk=bob.pk).update(last_heartbeat=lapsed)
    capture_broadcasts.clear()

    assert closing.requeue_lapsed_agents() == [bobs_chat.pk]

    assert positions(personas.acme) == {bobs_chat.pk: 1, queued[0].pk: 2, queued[1].pk: 3}
    assert queued_frames(capture_broadcasts, personas.v2)[-1]["position"] == 1
    assert queued_frames(capture_broadcasts, waiting[0])[-1]["position"] == 2
    assert queued_frames(capture_broadcasts, waiting[1])[-1]["position"] == 3

    # The next free slot goes to the re-queued chat first.
    closing.close_conversation(Actor.agent(alice.pk), conversation_id=chats[0].pk)

    assert refreshed(bobs_chat).agent_id == alice.pk
    assert positions(personas.acme) == {queued[0].pk: 1, queued[1].pk: 2}
