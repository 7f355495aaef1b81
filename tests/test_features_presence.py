"""Presence the visitor can see, and the queue's estimated wait: auto-away from the
dashboard's idle reports (the server judges; a chosen away stays), `agents_online`
meaning "an agent who can be routed this site's chats is here", `agents.online` frames
to a site's visitors on change only, and the wait estimated from recent handling times."""

import itertools
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from agents.models import AgentProfile
from chat import selectors
from chat.conversations import closing, presence, queue, sending
from chat.conversations.actors import Actor
from chat.models import Conversation, Site
from chat.realtime import groups, resume
from tests import ws
from tests.conftest import make_visitor

Status = Conversation.Status
AVAILABLE, AWAY = AgentProfile.Status.AVAILABLE, AgentProfile.Status.AWAY
_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def _auto_away_after_ten_minutes(settings):
    settings.SUPPORTDESK_AUTO_AWAY_SECONDS = 600


def profile(agent: AgentProfile) -> AgentProfile:
    return AgentProfile.objects.get(pk=agent.pk)


def open_chat(visitor) -> Conversation:
    posted = sending.post_message(
        Actor.visitor(visitor.pk), client_msg_id=f"m-{next(_ids)}", body="Hello?"
    )
    return Conversation.objects.get(pk=posted.message["conversation"])


def everyone_away() -> None:
    AgentProfile.objects.update(status=AWAY)


def presence_frames(broadcasts, agent) -> list[dict]:
    return broadcasts.frames(groups.agent_group(agent.pk), "presence")


def online_frames(broadcasts, site) -> list[dict]:
    return broadcasts.frames(groups.site_visitors_group(site.pk), "agents.online")


# --- auto-away --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_available_agent_idle_past_the_setting_is_put_away_automatically(
    personas, capture_broadcasts
):
    start = timezone.now()
    assert presence.report_activity(agent_id=personas.alice.pk, idle_seconds=575, now=start) is None
    assert profile(personas.alice).status == AVAILABLE

    # The next ping, 25 s later: no input since.
    later = start + timedelta(seconds=25)
    assert presence.report_activity(agent_id=personas.alice.pk, idle_seconds=600, now=later) == AWAY

    alice = profile(personas.alice)
    assert (alice.status, alice.auto_away) == (AWAY, True)
    assert presence_frames(capture_broadcasts, personas.alice) == [
        {"type": "presence", "status": "away", "auto": True}
    ]


@pytest.mark.django_db(transaction=True)
def test_an_auto_away_agent_is_available_again_on_their_next_input_and_takes_the_queue(
    personas, capture_broadcasts
):
    presence.report_activity(agent_id=personas.alice.pk, idle_seconds=900)
    AgentProfile.objects.filter(pk=personas.bob.pk).update(status=AWAY)
    waiting = open_chat(personas.v1)
    assert waiting.status == Status.QUEUED

    # New input: the dashboard's idle time restarts (the cached last input is older).
    assert presence.report_activity(agent_id=personas.alice.pk, idle_seconds=0) == AVAILABLE

    alice = profile(personas.alice)
    assert (alice.status, alice.auto_away) == (AVAILABLE, False)
    assert presence_frames(capture_broadcasts, personas.alice)[-1] == {
        "type": "presence",
        "status": "available",
        "auto": True,
    }
    assert Conversation.objects.get(pk=waiting.pk).agent_id == personas.alice.pk


@pytest.mark.django_db(transaction=True)
def test_a_chosen_away_is_not_undone_by_activity(personas, capture_broadcasts):
    presence.set_presence(agent_id=personas.alice.pk, status="away")
    capture_broadcasts.clear()

    assert presence.report_activity(agent_id=personas.alice.pk, idle_seconds=0) is None

    alice = profile(personas.alice)
    assert (alice.status, alice.auto_away) == (AWAY, False)
    assert presence_frames(capture_broadcasts, personas.alice) == []


@pytest.mark.django_db(transaction=True)
def test_choosing_away_while_auto_away_makes_it_a_choice(personas):
    presence.report_activity(agent_id=personas.alice.pk, idle_seconds=900)
    presence.set_presence(agent_id=personas.alice.pk, status="away")

    presence.report_activity(agent_id=personas.alice.pk, idle_seconds=0)

    assert (profile(personas.alice).status, profile(personas.alice).auto_away) == (AWAY, False)


@pytest.mark.django_db(transaction=True)
def test_an_idle_second_dashboard_does_not_put_away_an_agent_working_in_another(personas):
    # Alice types in one dashboard; her forgotten laptop reports a long idle time.
    presence.report_activity(agent_id=personas.alice.pk, idle_seconds=3)
    presence.report_activity(agent_id=personas.alice.pk, idle_seconds=5000)

    assert profile(personas.alice).status == AVAILABLE


@pytest.mark.django_db(transaction=True)
def test_auto_away_is_off_when_the_setting_is_zero(personas, settings):
    settings.SUPPORTDESK_AUTO_AWAY_SECONDS = 0

    assert presence.report_activity(agent_id=personas.alice.pk, idle_seconds=10**6) is None
    assert profile(personas.alice).status == AVAILABLE


# --- agents online ------------------------------------------------------------------


@pytest.mark.django_db
def test_agents_online_means_an_agent_who_can_be_routed_this_sites_chats_is_here(personas):
    site = personas.acme
    assert selectors.agents_online(site.pk) is True

    # Full agents still count: the visitor queues and is answered.
    for visitor in (personas.v1, personas.v2, personas.v3):
        open_chat(visitor)
    assert selectors.agents_online(site.pk) is True

    # Not: away (chosen or idle), a lapsed heartbeat, capacity 0, another site only.
    AgentProfile.objects.filter(pk=personas.bob.pk).update(status=AWAY)
    presence.report_activity(agent_id=personas.alice.pk, idle_seconds=900)
    assert selectors.agents_online(site.pk) is False

    presence.set_presence(agent_id=personas.alice.pk, status="available")
    stale = timezone.now() - timedelta(minutes=5)
    AgentProfile.objects.filter(pk=personas.alice.pk).update(last_heartbeat=stale)
    assert selectors.agents_online(site.pk) is False

    AgentProfile.objects.filter(pk=personas.alice.pk).update(
        last_heartbeat=timezone.now(), capacity=0
    )
    assert selectors.agents_online(site.pk) is False

    other = Site.objects.create(name="other", allowed_origins=[])
    AgentProfile.objects.filter(pk=personas.alice.pk).update(capacity=2)
    profile(personas.alice).sites.set([other])
    assert selectors.agents_online(site.pk) is False
    assert selectors.agents_online(other.pk) is True
    assert selectors.online_site_ids() == {other.pk}


@pytest.mark.django_db(transaction=True)
def test_visitors_of_the_site_hear_agents_online_change_and_nothing_when_it_holds(
    personas, capture_broadcasts
):
    closing.sweep()  # the first look announces every site once (no last state yet)
    capture_broadcasts.clear()

    presence.set_presence(agent_id=personas.bob.pk, status="away")
    assert online_frames(capture_broadcasts, personas.acme) == []  # alice is still here

    presence.report_activity(agent_id=personas.alice.pk, idle_seconds=900)
    assert online_frames(capture_broadcasts, personas.acme) == [
        {"type": "agents.online", "online": False}
    ]

    capture_broadcasts.clear()
    closing.sweep()
    assert online_frames(capture_broadcasts, personas.acme) == []

    presence.report_activity(agent_id=personas.alice.pk, idle_seconds=1)
    assert online_frames(capture_broadcasts, personas.acme) == [
        {"type": "agents.online", "online": True}
    ]


@pytest.mark.django_db(transaction=True)
def test_a_lapsed_heartbeat_takes_the_site_offline_at_the_next_sweep(personas, capture_broadcasts):
    closing.sweep()
    capture_broadcasts.clear()
    stale = timezone.now() - timedelta(minutes=5)
    AgentProfile.objects.update(last_heartbeat=stale)

    closing.sweep()

    assert online_frames(capture_broadcasts, personas.acme) == [
        {"type": "agents.online", "online": False}
    ]


# --- estimated wait ---------------------------------------------------------------


def handled(site, visitor, *, minutes: float, closed_ago: timedelta) -> None:
    """A closed conversation that an agent handled for `minutes`."""
    closed_at = timezone.now() - closed_ago
    Conversation.objects.create(
        site=site,
        visitor=visitor,
        status=Status.CLOSED,
        assigned_at=closed_at - timedelta(minutes=minutes),
        closed_at=closed_at,
    )


@pytest.mark.django_db
def test_wait_is_the_median_handling_time_times_position_over_the_routable_slots(personas):
    # Handling times 2, 4, 6, 8 and 30 minutes: median 6 min. A chat closed two days
    # ago does not count.
    for minutes in (2, 4, 6, 8, 30):
        handled(personas.acme, personas.v3, minutes=minutes, closed_ago=timedelta(hours=1))
    handled(personas.acme, personas.v3, minutes=500, closed_ago=timedelta(days=2))

    # alice (2) + bob (1) = 3 slots.
    basis = selectors.wait_basis(personas.acme.pk)
    assert basis == selectors.WaitBasis(360.0, 3)
    assert (basis.estimate(1), basis.estimate(3)) == (120, 360)


@pytest.mark.django_db
def test_without_recent_chats_the_sites_typical_chat_length_stands_in(personas):
    # A new site has no history: its typical chat (5 minutes unless set) over 3 slots.
    assert selectors.wait_basis(personas.acme.pk).estimate(1) == 100
    Site.objects.filter(pk=personas.acme.pk).update(typical_chat_minutes=12)
    assert selectors.wait_basis(personas.acme.pk).estimate(2) == 480

    # Nobody who could take a chat: no estimate to give.
    everyone_away()
    assert selectors.wait_basis(personas.acme.pk).estimate(1) is None


@pytest.mark.django_db(transaction=True)
def test_queued_visitors_hear_a_new_estimate_when_an_agent_goes_away(personas, capture_broadcasts):
    # Everyone busy: three slots, two visitors waiting (5 min per chat, no history).
    for visitor in [make_visitor(personas.acme)[0] for _ in range(3)]:
        open_chat(visitor)
    open_chat(personas.v1), open_chat(personas.v2)
    capture_broadcasts.clear()

    presence.set_presence(agent_id=personas.alice.pk, status="away")

    told = {
        visitor.pk: [
            (f["position"], f["estimated_wait_seconds"])
            for f in capture_broadcasts.frames(
                groups.visitor_group(visitor.pk), "conversation.queued"
            )
        ]
        for visitor in (personas.v1, personas.v2)
    }
    # Only bob's slot is left: 300 s per chat, one slot.
    assert told == {personas.v1.pk: [(1, 300)], personas.v2.pk: [(2, 600)]}


@pytest.mark.django_db(transaction=True)
def test_queued_visitors_hear_their_position_and_estimate_and_ready_carries_it(
    personas, capture_broadcasts
):
    for minutes in (3, 6, 9):
        handled(personas.acme, personas.v3, minutes=minutes, closed_ago=timedelta(hours=2))
    # Fill alice (2) and bob (1): three slots, all busy.
    busy = [make_visitor(personas.acme)[0] for _ in range(3)]
    for visitor in busy:
        open_chat(visitor)
    capture_broadcasts.clear()

    first, second = open_chat(personas.v1), open_chat(personas.v2)

    frames = capture_broadcasts.frames(groups.visitor_group(personas.v2.pk), "conversation.queued")
    # (queue_version is a clock reading: tests/test_queue_versions.py)
    assert {k: v for k, v in frames[-1].items() if k != "queue_version"} == {
        "type": "conversation.queued",
        "conversation": second.pk,
        "position": 2,
        "estimated_wait_seconds": 240,  # 6 min x 2 / 3 slots
    }
    ready = resume.visitor_ready(personas.v1, 0, sneak_peek=False)
    assert ready["conversation"]["queue_position"] == 1
    assert ready["conversation"]["estimated_wait_seconds"] == 120
    assert first.status == Status.QUEUED


@pytest.mark.django_db(transaction=True)
def test_a_queue_broadcast_reads_the_wait_basis_once_for_many_visitors(
    personas, django_assert_max_num_queries
):
    handled(personas.acme, personas.v3, minutes=4, closed_ago=timedelta(hours=1))
    everyone_away()
    for _ in range(6):
        open_chat(make_visitor(personas.acme)[0])

    # The positions (1 query) and the basis (2 queries), not 6 x anything; plus the
    # reading's turn (queue._lock_queue_reading): here a SAVEPOINT and its RELEASE.
    with django_assert_max_num_queries(5):
        queue.read_queue(personas.acme.pk, None)


# --- over the sockets ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_visitors_widget_hears_agents_go_offline_and_back_once_each(personas, sockets):
    await ws.run_service(closing.sweep)
    visitor, ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    assert ready["agents_online"] is True
    alice, _ = await sockets.agent(personas.alice)
    await ws.run_service(presence.set_presence, agent_id=personas.bob.pk, status="away")

    await alice.send_json_to({"type": "ping", "idle_seconds": 601})
    assert await ws.receive_until(alice, "presence") == {
        "type": "presence",
        "status": "away",
        "auto": True,
    }
    assert await ws.receive_until(visitor, "agents.online") == {
        "type": "agents.online",
        "online": False,
    }
    # Announced again (another worker's sweep, a stale cache): the widget hears it once.
    await ws.db(cache.clear)
    await ws.run_service(closing.sweep)
    assert [f["type"] for f in await ws.frames_before_pong(visitor)] == []

    await alice.send_json_to({"type": "ping", "idle_seconds": 0})
    await ws.receive_until(alice, "presence")
    assert (await ws.receive_until(visitor, "agents.online"))["online"] is True


@pytest.mark.django_db(transaction=True)
async def test_a_bad_idle_report_is_refused_and_changes_nothing(personas, sockets):
    alice, _ = await sockets.agent(personas.alice)

    await alice.send_json_to({"type": "ping", "idle_seconds": "forever"})

    error = await ws.receive_until(alice, "error")
    assert error["code"] == "bad_frame"
    assert (await ws.db(profile, personas.alice)).status == AVAILABLE
