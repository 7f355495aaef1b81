"""The analytics numbers against hand-computed fixtures (conversations recorded with exact
times), and the staff-only page that shows them.

Percentiles interpolate like PostgreSQL's percentile_cont: for sorted values v0..v(n-1),
rank = fraction * (n - 1), and the result lies between the two values around that rank.
"""

import secrets
from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents.models import AgentProfile
from chat import analytics
from chat.management.commands.seed_demo import historical_timestamps
from chat.models import Conversation, ConversationRating, Message, SenderKind, Site, Visitor

pytestmark = pytest.mark.django_db

# A Monday morning, UTC (the project's time zone).
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(seconds: float = 0, *, days: int = 0) -> datetime:
    return T0 + timedelta(days=days, seconds=seconds)


def record_chat(
    site: Site,
    *,
    created: datetime,
    assigned: datetime | None = None,
    agent: AgentProfile | None = None,
    closed: datetime | None = None,
    messages: list[tuple[str, datetime, str]] = (),
    rating: int | None = None,
    comment: str = "",
    visitor: Visitor | None = None,
) -> Conversation:
    """A conversation as the record holds it afterwards, with exact times. `messages` are
    (sender, sent at, body); the visitor's opening message is added at `created`."""
    if closed is not None:
        status = Conversation.Status.CLOSED
    elif assigned is not None:
        status = Conversation.Status.ACTIVE
    else:
        status = Conversation.Status.QUEUED
    visitor = visitor or Visitor.objects.create(site=site, token_hash=secrets.token_hex(32))
    lines = [(SenderKind.VISITOR, created, "Hello?"), *messages]
    with historical_timestamps():
        conversation = Conversation.objects.create(
            site=site,
            visitor=visitor,
            agent=agent,
            status=status,
            created_at=created,
            queued_at=created,
            assigned_at=assigned,
            closed_at=closed,
            closed_by=SenderKind.VISITOR if closed else "",
            last_activity_at=max(when for _, when, _ in lines),
            last_seq=len(lines),
        )
        for seq, (sender, when, body) in enumerate(lines, start=1):
            Message.objects.create(
                conversation=conversation,
                seq=seq,
                sender=sender,
                sender_agent=agent if sender == SenderKind.AGENT else None,
                body=body,
                client_msg_id=None if sender == SenderKind.SYSTEM else f"m{seq}",
                created_at=when,
            )
        if rating is not None:
            ConversationRating.objects.create(
                conversation=conversation, score=rating, comment=comment, created_at=closed
            )
    return conversation


def answered_chat(site, agent, *, start: float = 0, wait: float, reply: float, length: float,
                  days: int = 0, rating: int | None = None) -> Conversation:  # fmt: skip
    """Started at T0 + `start` s, assigned `wait` s later, first agent reply `reply` s after
    that, closed `length` s after assignment."""
    created = at(start, days=days)
    assigned = created + timedelta(seconds=wait)
    return record_chat(
        site,
        created=created,
        assigned=assigned,
        agent=agent,
        closed=assigned + timedelta(seconds=length),
        messages=[(SenderKind.AGENT, assigned + timedelta(seconds=reply), "Hi, how can I help?")],
        rating=rating,
    )


def day_scope(**filters) -> analytics.Scope:
    return analytics.Scope(start=T0.date(), end=T0.date(), **filters)


# --- each metric against hand-computed values ---------------------------------------


def test_three_waits_give_the_middle_one_as_median_and_an_interpolated_p90(personas):
    for wait in (600, 60, 120):  # stored out of order: the database sorts
        answered_chat(personas.acme, personas.alice, wait=wait, reply=5, length=100)

    totals = analytics.report(day_scope()).totals

    # Sorted 60, 120, 600: median is rank 1 = 120; p90 is rank 1.8 = 120 + 0.8 * 480.
    assert totals.wait == (120.0, 504.0)


def test_an_even_count_of_waits_has_the_mean_of_the_middle_two_as_median(personas):
    for wait in (10, 20, 40, 80):
        answered_chat(personas.acme, personas.alice, wait=wait, reply=5, length=100)

    totals = analytics.report(day_scope()).totals

    # rank 1.5 -> (20 + 40) / 2; p90 rank 2.7 -> 40 + 0.7 * 40.
    assert totals.wait == (30.0, 68.0)


def test_times_keep_millisecond_precision(personas):
    answered_chat(personas.acme, personas.alice, wait=1.25, reply=0.5, length=61.125)

    totals = analytics.report(day_scope()).totals

    assert totals.wait == (1.25, 1.25)
    assert totals.first_response == (0.5, 0.5)
    assert totals.duration == (61.125, 61.125)


def test_first_response_runs_from_the_last_assignment_to_the_next_agent_message(personas):
    for reply in (10, 50, 30):
        answered_chat(personas.acme, personas.alice, wait=5, reply=reply, length=300)
    # Re-queued: bob answered at +20 s, then alice took it at +200 s and answered at
    # +270 s. Only alice's answer counts, 70 s after her assignment.
    record_chat(
        personas.acme,
        created=at(0),
        assigned=at(200),
        agent=personas.alice,
        closed=at(400),
        messages=[
            (SenderKind.AGENT, at(20), "Bob here"),
            (SenderKind.SYSTEM, at(150), "Your agent was disconnected."),
            (SenderKind.AGENT, at(270), "Alice here"),
        ],
    )
    # Assigned but nobody has answered yet: no first response to count.
    record_chat(personas.acme, created=at(0), assigned=at(5), agent=personas.bob)

    totals = analytics.report(day_scope()).totals

    # 10, 30, 50, 70: median rank 1.5 = 40; p90 rank 2.7 = 50 + 0.7 * 20.
    assert totals.first_response == (40.0, 64.0)


def test_duration_runs_from_assignment_to_close_for_chats_an_agent_took(personas):
    answered_chat(personas.acme, personas.alice, wait=30, reply=5, length=300)
    answered_chat(personas.acme, personas.alice, wait=90, reply=5, length=500)
    record_chat(personas.acme, created=at(0), assigned=at(10), agent=personas.bob)  # open
    record_chat(personas.acme, created=at(0), closed=at(240))  # missed

    totals = analytics.report(day_scope()).totals

    # 300, 500: median 400; p90 rank 0.9 = 300 + 0.9 * 200.
    assert totals.duration == (400.0, 480.0)


def test_missed_chats_are_those_closed_while_still_queued(personas):
    answered_chat(personas.acme, personas.alice, wait=30, reply=5, length=300)
    record_chat(personas.acme, created=at(0), closed=at(240))  # gave up in the queue
    record_chat(personas.acme, created=at(60))  # still waiting: not missed (yet)

    totals = analytics.report(day_scope()).totals

    assert (totals.chats, totals.answered, totals.missed) == (3, 1, 1)
    assert totals.missed_share == pytest.approx(1 / 3)


def test_csat_average_and_distribution_count_each_rating_once(personas):
    for score in (5, 4, 4, 1):
        answered_chat(personas.acme, personas.alice, wait=5, reply=5, length=60, rating=score)
    answered_chat(personas.acme, personas.alice, wait=5, reply=5, length=60)  # not rated

    report = analytics.report(day_scope())

    assert report.totals.rated == 4
    assert report.totals.csat_average == 3.5
    assert report.csat == {1: 1, 2: 0, 3: 0, 4: 2, 5: 1}


def test_chats_per_day_cover_every_day_of_the_range_including_empty_ones(personas):
    answered_chat(personas.acme, personas.alice, wait=5, reply=5, length=60)
    record_chat(personas.acme, created=at(3600), closed=at(3700))  # missed, same day
    answered_chat(personas.acme, personas.alice, days=2, wait=5, reply=5, length=60)
    answered_chat(personas.acme, personas.alice, days=5, wait=5, reply=5, length=60)  # outside

    scope = analytics.Scope(start=T0.date(), end=T0.date() + timedelta(days=2))
    report = analytics.report(scope)

    assert [(d.day.day, d.chats, d.missed) for d in report.per_day] == [
        (2, 2, 1),
        (3, 0, 0),
        (4, 1, 0),
    ]
    assert report.totals.chats == 3


def test_a_chat_counts_on_the_day_it_started_even_if_it_ended_the_next(personas):
    late = datetime(2026, 3, 2, 23, 59, 30, tzinfo=UTC)
    record_chat(personas.acme, created=late, assigned=late + timedelta(seconds=60),
                agent=personas.alice, closed=late + timedelta(minutes=10))  # fmt: skip

    report = analytics.report(analytics.Scope(start=date(2026, 3, 2), end=date(2026, 3, 3)))

    assert [d.chats for d in report.per_day] == [1, 0]
    assert report.hours[23] == 1


def test_busiest_hours_count_chats_by_the_hour_they_started(personas):
    for start in (0, 1800, 3599, 3600, 5 * 3600):  # 09:00, 09:30, 09:59:59, 10:00, 14:00
        answered_chat(personas.acme, personas.alice, start=start, wait=5, reply=5, length=60)

    hours = analytics.report(day_scope()).hours

    assert len(hours) == 24
    assert (hours[9], hours[10], hours[14]) == (3, 1, 1)
    assert sum(hours) == 5


def test_figures_per_site_and_per_agent_are_computed_within_each_group(personas):
    shop = Site.objects.create(name="shop")
    for wait, reply in ((10, 4), (20, 6), (30, 8)):
        answered_chat(personas.acme, personas.alice, wait=wait, reply=reply, length=100, rating=5)
    answered_chat(shop, personas.bob, wait=100, reply=40, length=900, rating=2)
    record_chat(shop, created=at(0), closed=at(300))  # missed on shop

    report = analytics.report(day_scope())

    acme, other = report.per_site  # busiest first
    assert (acme.label, acme.chats, acme.missed, acme.wait) == ("acme", 3, 0, (20.0, 28.0))
    assert (other.label, other.chats, other.missed, other.wait) == ("shop", 2, 1, (100.0, 100.0))
    alice, bob = report.per_agent
    assert (alice.label, alice.chats, alice.first_response, alice.csat_average) == (
        "Alice",
        3,
        (6.0, 7.6),
        5.0,
    )
    assert (bob.label, bob.chats, bob.duration, bob.csat_average) == ("Bob", 1, (900.0, 900.0), 2.0)
    # Everything at once: waits 10, 20, 30, 100.
    assert report.totals.wait == (25.0, 79.0)


def test_with_one_site_its_row_has_the_same_times_as_the_totals(personas):
    for wait in (60, 120, 600):
        answered_chat(personas.acme, personas.alice, wait=wait, reply=wait / 10, length=wait)

    report = analytics.report(day_scope())

    (acme,) = report.per_site
    assert (acme.wait, acme.first_response, acme.duration) == (
        (120.0, 504.0),
        (12.0, 50.4),
        (120.0, 504.0),
    )
    assert (acme.wait, acme.first_response, acme.duration) == (
        report.totals.wait,
        report.totals.first_response,
        report.totals.duration,
    )


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's way only")
def test_sqlite_percentiles_leave_no_temporary_table_behind(personas):
    answered_chat(personas.acme, personas.alice, wait=10, reply=5, length=60)

    analytics.report(day_scope())

    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_temp_master")
        assert cursor.fetchall() == []


def test_a_scope_keeps_only_one_site_and_one_agent(personas):
    shop = Site.objects.create(name="shop")
    answered_chat(personas.acme, personas.alice, wait=10, reply=5, length=60)
    answered_chat(personas.acme, personas.bob, wait=50, reply=5, length=60)
    answered_chat(shop, personas.alice, wait=90, reply=5, length=60)

    by_site = analytics.report(day_scope(site_id=personas.acme.pk))
    by_agent = analytics.report(day_scope(agent_id=personas.alice.pk))
    both = analytics.report(day_scope(site_id=shop.pk, agent_id=personas.alice.pk))

    assert (by_site.totals.chats, by_site.totals.wait[0]) == (2, 30.0)
    assert (by_agent.totals.chats, by_agent.totals.wait[0]) == (2, 50.0)
    assert (both.totals.chats, both.totals.wait[0]) == (1, 90.0)


def test_an_empty_period_has_zero_counts_and_no_times(personas):
    answered_chat(personas.acme, personas.alice, days=10, wait=10, reply=5, length=60)

    report = analytics.report(day_scope())

    assert (report.totals.chats, report.totals.missed, report.totals.rated) == (0, 0, 0)
    assert report.totals.wait == (None, None)
    assert report.totals.csat_average is None
    assert report.totals.missed_share is None
    assert report.per_site == report.per_agent == []
    assert sum(report.hours) == 0


def test_a_report_costs_as_many_queries_for_many_chats_as_for_two(personas):
    answered_chat(personas.acme, personas.alice, wait=10, reply=5, length=60, rating=4)
    answered_chat(personas.acme, personas.bob, wait=10, reply=5, length=60)
    with CaptureQueriesContext(connection) as two:
        analytics.report(day_scope())
    for n in range(40):
        agent = personas.alice if n % 2 else personas.bob
        answered_chat(personas.acme, agent, start=n * 60, wait=n, reply=5, length=60, rating=5)

    with CaptureQueriesContext(connection) as many:
        analytics.report(day_scope())

    assert reads(two) == reads(many) < 25


def reads(captured: CaptureQueriesContext) -> int:
    """Statements, not counting PostgreSQL's savepoints and `SET LOCAL jit = off`."""
    return sum(
        not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "SET LOCAL"))
        for q in captured.captured_queries
    )


# --- the page -----------------------------------------------------------------------


def analytics_url(**params) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("admin-analytics") + (f"?{query}" if query else "")


def test_the_page_shows_the_numbers_and_svg_charts_with_a_strict_csp(admin_client, personas):
    for wait in (60, 120, 600):
        answered_chat(personas.acme, personas.alice, wait=wait, reply=12, length=300, rating=4)
    record_chat(personas.acme, created=at(0), closed=at(200))

    response = admin_client.get(analytics_url(start="2026-03-02", end="2026-03-02"))

    assert response.status_code == 200
    html = response.content.decode()
    assert response.context["report"].totals.chats == 4
    for shown in ("Support analytics", "2m 00s", "8m 24s", "12s", "4.00", "Alice", "acme"):
        assert shown in html
    assert html.count("<svg") >= 3
    assert "Mon 2 Mar: 4 chats, 1 missed" in html  # a bar's tooltip
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "<script>" not in html  # nothing inline for the CSP to block
    assert " style=" not in html


def test_the_page_defaults_to_the_last_30_days_ending_today(admin_client, personas):
    response = admin_client.get(analytics_url())

    scope = response.context["report"].scope
    assert (scope.end - scope.start).days == 29
    assert f'value="{scope.start.isoformat()}"' in response.content.decode()


def test_the_page_filters_by_site_and_agent(admin_client, personas):
    shop = Site.objects.create(name="shop")
    answered_chat(personas.acme, personas.alice, wait=10, reply=5, length=60)
    answered_chat(shop, personas.bob, wait=50, reply=5, length=60)

    response = admin_client.get(
        analytics_url(start="2026-03-01", end="2026-03-31", site=shop.pk, agent=personas.bob.pk)
    )

    assert response.context["report"].totals.chats == 1
    assert [row.label for row in response.context["report"].per_site] == ["shop"]


def test_a_start_after_the_end_is_refused_and_the_last_30_days_shown(admin_client, personas):
    response = admin_client.get(analytics_url(start="2026-03-10", end="2026-03-01"))

    assert response.status_code == 200
    assert "The start date is after the end date." in response.content.decode()
    assert response.context["report"].scope.end == response.context[
        "report"
    ].scope.start + timedelta(days=29)


def test_anonymous_users_are_sent_to_the_admin_login(client, db):
    response = client.get(analytics_url())

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_who_may_not_read_conversations_are_refused(db):
    user = get_user_model().objects.create_user("intern", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)

    assert client.get(analytics_url()).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    assert client.get(analytics_url()).status_code == 200


def test_agents_who_are_not_staff_cannot_open_the_page(client, personas):
    client.force_login(personas.alice.user)

    response = client.get(analytics_url())

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_the_conversation_list_and_admin_index_link_to_the_page(admin_client, db):
    for page in (reverse("admin:index"), reverse("admin:chat_conversation_changelist")):
        assert f'href="{reverse("admin-analytics")}"' in admin_client.get(page).content.decode()


def test_the_page_speaks_the_admins_language_with_its_numbers_and_plurals(admin_client, personas):
    for wait in (60, 120, 600):
        answered_chat(personas.acme, personas.alice, wait=wait, reply=12, length=300, rating=4)
    record_chat(personas.acme, created=at(0), closed=at(200))
    admin_client.cookies["django_language"] = "de"

    html = admin_client.get(analytics_url(start="2026-03-02", end="2026-03-02")).content.decode()

    for shown in (
        "Support-Auswertung",
        "Chats pro Tag",
        "Erste Antwort Median",
        "2 Min. 00 Sek.",  # the median wait
        "3 Bewertungen",
        "4,00",  # the average rating, with the German decimal comma
        "Mo 2 Mär: 4 Chats, 1 verpasst",  # a bar's tooltip
    ):
        assert shown in html, shown
    assert "Chats per day" not in html


def test_the_arabic_page_uses_the_form_arabic_needs_for_two(admin_client, personas):
    for wait in (60, 120):
        answered_chat(personas.acme, personas.alice, wait=wait, reply=12, length=300, rating=4)
    admin_client.cookies["django_language"] = "ar"

    html = admin_client.get(analytics_url(start="2026-03-02", end="2026-03-02")).content.decode()

    assert 'dir="rtl"' in html
    assert "تقييمان" in html  # two ratings: the dual, not "2 تقييمات"
    assert "تحليلات الدعم" in html
