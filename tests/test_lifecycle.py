"""How transcripts leave: `purge_transcripts` (retention per site, dry run by default) and
`erase_visitor` (GDPR erasure: nothing of the visitor left in any table, anonymous counts
kept), both audit-logged."""

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from chat import analytics
from chat.conversations import closing, sending, sessions
from chat.conversations.actors import Actor
from chat.models import (
    AuditLogEntry,
    Conversation,
    ConversationRating,
    Message,
    Note,
    SenderKind,
    Site,
    Visitor,
)
from chat.realtime import groups

from .conftest import make_visitor
from .test_analytics import record_chat

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def days_ago(days: float):
    return timezone.now() - timedelta(days=days)


def closed_chat(site: Site, *, closed_days_ago: float, rating: int | None = None):
    """A chat that closed that long ago; its visitor was last seen then too."""
    closed = days_ago(closed_days_ago)
    conversation = record_chat(
        site,
        created=closed - timedelta(minutes=10),
        closed=closed,
        messages=[(SenderKind.VISITOR, closed - timedelta(minutes=5), "old words")],
        rating=rating,
    )
    Visitor.objects.filter(pk=conversation.visitor_id).update(last_seen=closed)
    return conversation


def old_visitor(site: Site) -> Visitor:
    visitor, _token = make_visitor(site)
    Visitor.objects.filter(pk=visitor.pk).update(last_seen=days_ago(400))
    return visitor


# --- purge_transcripts ------------------------------------------------------------------


@pytest.fixture
def retention(personas):
    """acme keeps 30 days; shop keeps everything."""
    Site.objects.filter(pk=personas.acme.pk).update(retention_days=30)
    shop = Site.objects.create(name="shop")
    chats = {
        "expired": closed_chat(personas.acme, closed_days_ago=31, rating=2),
        "expired_too": closed_chat(personas.acme, closed_days_ago=365),
        "recent": closed_chat(personas.acme, closed_days_ago=29),
        # Open for 40 days (an agent never closed it): someone may still be talking.
        "open_old": record_chat(personas.acme, created=days_ago(40)),
        "shop_old": closed_chat(shop, closed_days_ago=1000),
    }
    return personas, shop, chats


def test_purge_is_a_dry_run_by_default_that_prints_what_would_go(retention):
    before = (Conversation.objects.count(), Message.objects.count())

    out = run("purge_transcripts")

    assert "acme" in out and "would delete 2 conversations, 4 messages" in out
    assert "shop" not in out  # no retention: not even mentioned
    assert "Dry run: nothing was deleted" in out
    assert (Conversation.objects.count(), Message.objects.count()) == before
    assert not AuditLogEntry.objects.exists()


def test_purge_yes_deletes_only_closed_conversations_past_their_sites_retention(retention):
    _personas, _shop, chats = retention

    out = run("purge_transcripts", "--yes")

    assert "Deleted 2 conversations, 4 messages" in out
    left = set(Conversation.objects.values_list("pk", flat=True))
    assert left == {chats[k].pk for k in ("recent", "open_old", "shop_old")}
    gone = [chats["expired"].pk, chats["expired_too"].pk]
    assert not Message.objects.filter(conversation_id__in=gone).exists()
    assert not ConversationRating.objects.filter(conversation_id__in=gone).exists()


def test_purge_removes_visitors_left_with_nothing_once_they_are_past_retention(retention):
    personas, shop, chats = retention
    forgotten = old_visitor(personas.acme)  # no conversations, not seen for 400 days
    recent = make_visitor(personas.acme)[0]  # no conversations, but seen today
    elsewhere = old_visitor(shop)  # a site without retention

    run("purge_transcripts", "--yes")

    assert not Visitor.objects.filter(pk=forgotten.pk).exists()
    # The expired chats' visitors were last seen when those chats closed.
    assert not Visitor.objects.filter(pk=chats["expired"].visitor_id).exists()
    for kept in (recent, elsewhere, chats["recent"].visitor, chats["open_old"].visitor):
        assert Visitor.objects.filter(pk=kept.pk).exists()


def test_purge_writes_one_audit_entry_per_site_with_the_counts(retention):
    personas, _shop, _chats = retention

    run("purge_transcripts", "--yes")
    run("purge_transcripts", "--yes")  # nothing left to purge: no second entry

    (entry,) = AuditLogEntry.objects.all()
    assert (entry.action, entry.object_type, entry.object_id) == (
        AuditLogEntry.Action.PURGED,
        "site",
        str(personas.acme.pk),
    )
    assert entry.actor is None and entry.actor_label == "manage.py purge_transcripts"
    assert entry.details["retention_days"] == 30
    assert (entry.details["conversations"], entry.details["messages"]) == (2, 4)


def test_purge_deletes_in_batches_past_the_batch_size(personas, monkeypatch):
    from chat import lifecycle

    monkeypatch.setattr(lifecycle, "PURGE_BATCH", 3)
    Site.objects.filter(pk=personas.acme.pk).update(retention_days=1)
    for _ in range(7):
        closed_chat(personas.acme, closed_days_ago=2)

    out = run("purge_transcripts", "--yes")

    assert "Deleted 7 conversations, 14 messages" in out
    assert not Conversation.objects.exists()


def test_purge_without_any_retention_says_there_is_nothing_to_do(personas):
    closed_chat(personas.acme, closed_days_ago=5000)

    out = run("purge_transcripts", "--yes")

    assert "No site has a retention period" in out
    assert Conversation.objects.count() == 1


def test_retention_is_set_per_site_in_the_admin(admin_client, personas):
    response = admin_client.post(
        f"/admin/chat/site/{personas.acme.pk}/change/",
        {
            "name": "acme",
            "allowed_origins": "https://acme.example",
            "enabled": "on",
            "widget_color": "#2456d6",
            "widget_greeting": "Hi",
            "widget_position": "right",
            "typical_chat_minutes": "5",
            "retention_days": "90",
            # The per-language texts' inline, empty, as the admin page sends it.
            "texts-TOTAL_FORMS": "0",
            "texts-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302
    personas.acme.refresh_from_db()
    assert personas.acme.retention_days == 90


# --- erase_visitor ----------------------------------------------------------------------

NAME, EMAIL = "Grace Hopper", "grace.hopper@navy.example"
SAID = ["My address is 12 Fleet Street", "Card ending 4242", "Thanks, rated you well"]
REPLY = "Grace, I have updated 12 Fleet Street on your order"
COMMENT = "Grace was helped by Alice"
NOTE = "Grace Hopper is a repeat customer, lives at 12 Fleet Street"


@pytest.fixture
def grace(personas):
    """Visitor v1 with a name and email, a closed rated chat, an open one with alice,
    and an admin history line naming her. v2 is someone else, untouched by erasing v1."""
    Visitor.objects.filter(pk=personas.v1.pk).update(name=NAME, email=EMAIL)
    personas.v1.refresh_from_db()
    earlier = record_chat(
        personas.acme,
        visitor=personas.v1,
        created=days_ago(3),
        assigned=days_ago(3) + timedelta(seconds=40),
        agent=personas.alice,
        closed=days_ago(3) + timedelta(minutes=9),
        messages=[
            (SenderKind.VISITOR, days_ago(3) + timedelta(seconds=20), SAID[0]),
            (SenderKind.AGENT, days_ago(3) + timedelta(minutes=1), REPLY),
            (SenderKind.SYSTEM, days_ago(3) + timedelta(minutes=2), closing.REQUEUED_TEXT),
        ],
        rating=5,
        comment=COMMENT,
    )
    for n, body in enumerate(SAID[1:]):
        sending.post_message(
            Actor.visitor(personas.v1.pk), client_msg_id=f"grace-msg-{n}", body=body
        )
    Note.objects.create(
        conversation=earlier,
        author=personas.alice,
        body=NOTE,
        client_msg_id="note-1",
        after_seq=2,
    )
    sending.post_message(Actor.visitor(personas.v2.pk), client_msg_id="x", body="Bob's turn")
    LogEntry.objects.create(
        content_type=ContentType.objects.get_for_model(Visitor),
        object_id=str(personas.v1.pk),
        object_repr=str(personas.v1),
        action_flag=CHANGE,
        change_message='[{"changed": {"fields": ["Name"]}}]',
        user_id=_admin_user().pk,
    )
    return personas, earlier


def _admin_user():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("root", "root@example.com", "pw")


def every_value_in_the_database() -> list[tuple[str, str, str]]:
    """(table, column, value as text) of every cell of every table."""
    cells = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            columns = [c[0] for c in cursor.description]
            for row in cursor.fetchall():
                cells += [(table, col, str(v)) for col, v in zip(columns, row, strict=True)]
    return cells


@pytest.mark.django_db(transaction=True)
def test_after_erasure_no_table_holds_anything_of_the_visitor(grace):
    personas, _earlier = grace
    traces = [NAME, "Grace", EMAIL, "grace.hopper", personas.v1.token_hash, *SAID]
    traces += [REPLY, "Fleet Street", COMMENT, NOTE, "grace-msg-0", "grace-msg-1"]
    before = every_value_in_the_database()
    # The scan sees every one of them beforehand, so it would see one left behind.
    assert {t for t in traces if any(t in value for *_, value in before)} == set(traces)
    # Only its hash is stored, but the token itself must not turn up either.
    traces.append(personas.token(personas.v1))

    run("erase_visitor", "--email", EMAIL)

    leftovers = [
        (table, column, trace)
        for table, column, value in every_value_in_the_database()
        for trace in traces
        if trace in value
    ]
    assert leftovers == []


@pytest.mark.django_db(transaction=True)
def test_erasure_keeps_the_anonymous_counts(grace):
    personas, _earlier = grace
    scope = analytics.Scope.last_days(30)
    before = analytics.report(scope).totals
    counts = (Conversation.objects.count(), Message.objects.count(), Visitor.objects.count())

    run("erase_visitor", "--visitor", str(personas.v1.pk))

    after = analytics.report(scope).totals
    assert (
        Conversation.objects.count(),
        Message.objects.count(),
        Visitor.objects.count(),
    ) == counts
    assert (after.chats, after.answered, after.missed) == (
        before.chats,
        before.answered,
        before.missed,
    )
    assert (after.wait, after.first_response) == (before.wait, before.first_response)
    assert (before.rated, after.rated) == (1, 0)  # the rating was theirs
    bodies = set(
        Message.objects.filter(conversation__visitor=personas.v1).values_list("body", flat=True)
    )
    # System lines are ours, not theirs, and keep the timeline readable.
    assert bodies == {"[erased]", closing.REQUEUED_TEXT}


@pytest.mark.django_db(transaction=True)
def test_erasure_leaves_other_visitors_alone(grace):
    personas, _earlier = grace

    run("erase_visitor", "--email", EMAIL)

    assert list(
        Message.objects.filter(conversation__visitor=personas.v2).values_list("body", flat=True)
    ) == ["Bob's turn"]
    assert (
        sessions.create_visitor_session(
            site_key=personas.acme.key, visitor_token=personas.token(personas.v2)
        )[0].pk
        == personas.v2.pk
    )


@pytest.mark.django_db(transaction=True)
def test_erasure_closes_the_open_chat_frees_the_agent_and_cuts_off_the_token(
    grace, capture_broadcasts
):
    personas, _earlier = grace
    open_chat = Conversation.objects.get(visitor=personas.v1, status=Conversation.Status.ACTIVE)
    capture_broadcasts.clear()

    # With "=": a token may begin with "-", which argparse would take for an option.
    out = run("erase_visitor", f"--token={personas.token(personas.v1)}")

    assert "1 open conversation closed" in out
    open_chat.refresh_from_db()
    assert (open_chat.status, open_chat.closed_by) == (
        Conversation.Status.CLOSED,
        SenderKind.SYSTEM,
    )
    closed = {"type": "conversation.closed", "conversation": open_chat.pk, "by": "system"}
    assert closed in capture_broadcasts.frames(groups.agent_group(personas.alice.pk))
    # Their sockets are told their token is gone (the consumer closes them, 4401).
    assert (groups.visitor_group(personas.v1.pk), {"type": groups.TOKEN_ROTATED_EVENT}) in list(
        capture_broadcasts
    )
    # The old token now opens a brand-new, empty visitor.
    visitor, _ = sessions.create_visitor_session(
        site_key=personas.acme.key, visitor_token=personas.token(personas.v1)
    )
    assert visitor.pk != personas.v1.pk


@pytest.mark.django_db(transaction=True)
def test_erasure_writes_an_audit_entry_with_counts_and_no_personal_data(grace):
    personas, _earlier = grace

    run("erase_visitor", "--email", EMAIL.upper())  # emails match whatever their case

    (entry,) = AuditLogEntry.objects.filter(action=AuditLogEntry.Action.ERASED)
    assert (entry.object_type, entry.object_id) == ("visitor", str(personas.v1.pk))
    assert entry.actor_label == "manage.py erase_visitor"
    assert entry.details == {
        "matched_by": "email",
        "conversations": 2,
        "messages": 5,
        "notes": 1,
        "ratings": 1,
        "attachments": 0,
        "closed_open_conversations": 1,
    }


def test_a_dry_run_names_who_would_be_erased_and_changes_nothing(grace):
    personas, _earlier = grace

    out = run("erase_visitor", "--email", EMAIL, "--dry-run")

    assert f"Would erase visitor {personas.v1.pk} of acme (2 conversations)" in out
    assert Visitor.objects.get(pk=personas.v1.pk).email == EMAIL
    assert not AuditLogEntry.objects.exists()


def test_an_email_nobody_gave_is_an_error(personas):
    with pytest.raises(CommandError, match="No visitor matches that email"):
        run("erase_visitor", "--email", "nobody@example.com")


def test_exactly_one_way_to_name_the_visitor_is_required(personas):
    with pytest.raises(CommandError):
        run("erase_visitor")
    with pytest.raises(CommandError):
        run("erase_visitor", "--visitor", "1", "--email", EMAIL)


def test_an_email_given_on_two_sites_erases_both_visitors(personas):
    shop = Site.objects.create(name="shop")
    here = personas.v1
    there, _ = make_visitor(shop)
    Visitor.objects.filter(pk__in=[here.pk, there.pk]).update(email=EMAIL, name=NAME)

    out = run("erase_visitor", "--email", EMAIL)

    assert out.count("Erased visitor") == 2
    assert not Visitor.objects.filter(email=EMAIL).exists()
    assert AuditLogEntry.objects.filter(action=AuditLogEntry.Action.ERASED).count() == 2
