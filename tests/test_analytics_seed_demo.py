"""`seed_demo --conversations N`: sample data that looks like a month of real support,
consistent with every rule the live system keeps."""

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import Count, F, Max, Min
from django.utils import timezone

from agents.models import AgentProfile
from chat import analytics
from chat.conversations import sending, sessions
from chat.conversations.actors import Actor
from chat.models import (
    Conversation,
    ConversationRating,
    Message,
    Note,
    SenderKind,
    Site,
    Visitor,
)

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    err = StringIO()
    call_command("seed_demo", *args, stdout=StringIO(), stderr=err)
    return err.getvalue()


def test_without_conversations_seed_demo_adds_no_sample_data(db):
    seed()

    assert not Conversation.objects.exists()
    assert list(Site.objects.values_list("name", flat=True)) == ["Demo shop"]


def test_seed_demo_adds_n_closed_conversations_over_the_last_30_days(db):
    before = timezone.now()

    out = seed("--conversations", "300", "--seed", "7")

    assert "Added 300 sample conversations" in out
    conversations = Conversation.objects.all()
    assert conversations.count() == 300
    assert set(conversations.values_list("status", flat=True)) == {Conversation.Status.CLOSED}
    span = conversations.aggregate(first=Min("created_at"), last=Max("closed_at"))
    assert span["first"] >= before - timedelta(days=30)
    assert span["last"] <= before
    assert set(conversations.values_list("site__name", flat=True)) == {"Demo shop", "Demo outlet"}
    # Some were missed, most answered, many rated: every chart has something to show.
    report = analytics.report(analytics.Scope.last_days(31))
    assert report.totals.chats == 300
    assert 0 < report.totals.missed < 60
    assert 60 < report.totals.rated < 250
    assert len(report.per_agent) == 4
    assert sum(1 for day in report.per_day if day.chats) >= 20


def test_seeded_conversations_keep_the_rules_of_live_ones(db):
    seed("--conversations", "200", "--seed", "3")

    conversations = Conversation.objects.annotate(
        messages_count=Count("messages"), top_seq=Max("messages__seq")
    )
    for c in conversations:
        # seq is 1..n without gaps, and last_seq says so.
        assert c.messages_count == c.top_seq == c.last_seq
        assert c.created_at <= c.closed_at
        if c.assigned_at is None:  # missed: nobody took it
            assert c.agent_id is None
        else:
            assert c.created_at <= c.assigned_at <= c.closed_at
            assert c.agent_id is not None
    # Messages follow each other in time, and agent lines name their agent.
    previous = {}
    for m in Message.objects.order_by("conversation_id", "seq"):
        assert m.created_at >= previous.get(m.conversation_id, m.created_at)
        previous[m.conversation_id] = m.created_at
        assert (m.sender == SenderKind.AGENT) == (m.sender_agent_id is not None)
    assert not ConversationRating.objects.filter(conversation__assigned_at__isnull=True).exists()
    # Some agents left an internal note after their first answer.
    notes = Note.objects.select_related("conversation")
    assert notes.exists()
    for note in notes:
        assert note.author_id == note.conversation.agent_id
        assert 1 <= note.after_seq <= note.conversation.last_seq
    assert not Message.objects.filter(created_at__lt=F("conversation__created_at")).exists()


def test_sample_agents_cannot_log_in_and_are_never_routed_a_visitor(db):
    seed("--conversations", "20", "--seed", "1")
    site = Site.objects.get(name="Demo shop")

    samples = AgentProfile.objects.filter(user__username__startswith="sample-")
    assert samples.count() == 4
    assert not any(agent.user.has_usable_password() for agent in samples)
    assert set(samples.values_list("status", flat=True)) == {AgentProfile.Status.AWAY}
    visitor, _token = sessions.create_visitor_session(site_key=site.key, visitor_token=None)
    sending.post_message(Actor.visitor(visitor.pk), client_msg_id="1", body="Anyone?")
    live = Conversation.objects.get(visitor=visitor)
    assert live.status == Conversation.Status.QUEUED  # nobody real is online yet


def test_seeding_again_adds_more_without_duplicating_sites_or_agents(db):
    seed("--conversations", "10", "--seed", "1")
    seed("--conversations", "15", "--seed", "2")

    assert Conversation.objects.count() == 25
    assert Site.objects.count() == 2
    assert get_user_model().objects.filter(username__startswith="sample-").count() == 4
    assert Visitor.objects.count() == 25


def test_the_same_seed_gives_the_same_sample_data(db):
    seed("--conversations", "30", "--seed", "42")
    first = list(Message.objects.order_by("id").values_list("body", flat=True))
    Conversation.objects.all().delete()

    seed("--conversations", "30", "--seed", "42")

    assert list(Message.objects.order_by("id").values_list("body", flat=True)) == first


def test_a_negative_count_is_refused(db):
    with pytest.raises(CommandError, match="0 or more"):
        seed("--conversations", "-1")
