"""Reviewing transcripts in the admin: a conversation reads like the chat it was, search
and filters find the right ones, and exports stream exactly what was selected, each view
and export leaving an audit entry."""

import csv
import io
import json
import tracemalloc
from datetime import timedelta

import pytest
from django.urls import reverse

from chat import transcripts
from chat.conversations import closing
from chat.models import (
    Attachment,
    AuditLogEntry,
    Conversation,
    ConversationRating,
    Message,
    Note,
    SenderKind,
    Site,
)

from .test_analytics import answered_chat, at, record_chat

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:chat_conversation_changelist"


def page(conversation: Conversation) -> str:
    return reverse("admin:chat_conversation_change", args=[conversation.pk])


def listed(response) -> list[int]:
    return sorted(c.pk for c in response.context["cl"].result_list)


def export(admin_client, action: str, conversations, **extra) -> tuple[object, bytes]:
    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [c.pk for c in conversations], **extra},
    )
    return response, b"".join(response.streaming_content)


# --- the transcript page ------------------------------------------------------------


def test_a_transcript_reads_like_the_chat_with_events_timings_and_the_rating(
    admin_client, personas
):
    personas.v1.name, personas.v1.email = "Grace Hopper", "grace@navy.example"
    personas.v1.save()
    conversation = record_chat(
        personas.acme,
        visitor=personas.v1,
        created=at(0),
        assigned=at(90),
        agent=personas.alice,
        closed=at(600),
        messages=[
            (SenderKind.VISITOR, at(30), "My parcel never came"),
            (SenderKind.AGENT, at(105), "Sorry! Let me look it up."),
            (SenderKind.AGENT, at(300), "It ships again today."),
        ],
        rating=4,
        comment="Quick and kind",
    )
    Note.objects.create(
        conversation=conversation,
        author=personas.alice,
        body="Carrier lost it; reshipping",
        client_msg_id="n1",
        after_seq=3,
    )

    response = admin_client.get(page(conversation))

    html = response.content.decode()
    order = [
        "Grace Hopper started the chat",
        "Hello?",
        "My parcel never came",
        "Assigned to Alice",
        "Sorry! Let me look it up.",
        "Internal note",
        "Carrier lost it; reshipping",
        "It ships again today.",
        "Closed by the visitor",
        "Quick and kind",
    ]
    positions = [html.index(text) for text in order]
    assert positions == sorted(positions)
    assert "sd-from-agent" in html and "sd-from-visitor" in html
    summary = html[html.index('class="sd-summary"') : html.index("All recorded fields")]
    for shown in ("grace@navy.example", "1m 30s", "15s", "8m 30s", "★★★★☆"):
        assert shown in summary  # waited, first response, duration, rating
    assert response.context["message_count"] == 4


def test_system_messages_and_unanswered_chats_show_without_timings(admin_client, personas):
    conversation = record_chat(
        personas.acme,
        created=at(0),
        closed=at(1800),
        messages=[(SenderKind.SYSTEM, at(1800), closing.IDLE_CLOSED_TEXT)],
    )

    response = admin_client.get(page(conversation))

    html = response.content.decode()
    assert "sd-from-system" in html
    # The sweep's closing line and the close share an instant: the line reads first.
    assert html.index(closing.IDLE_CLOSED_TEXT) < html.index("Closed by the visitor")
    assert response.context["timings"] == transcripts.Timings(None, None, None)
    assert "Not rated" in html


def test_markup_in_a_message_is_shown_as_text_under_a_strict_csp(admin_client, personas):
    conversation = record_chat(
        personas.acme,
        created=at(0),
        messages=[(SenderKind.VISITOR, at(5), '<img src=x onerror="alert(1)">')],
    )

    response = admin_client.get(page(conversation))

    html = response.content.decode()
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "<img src=x" not in html
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_viewing_a_transcript_writes_one_audit_entry_naming_the_viewer(admin_client, personas):
    conversation = record_chat(personas.acme, created=at(0))

    admin_client.get(page(conversation))
    admin_client.get(reverse(CHANGELIST))  # the list is not a transcript view

    (entry,) = AuditLogEntry.objects.all()
    assert (entry.action, entry.object_type, entry.object_id) == (
        AuditLogEntry.Action.VIEWED,
        "conversation",
        str(conversation.pk),
    )
    assert (entry.actor.username, entry.actor_label) == ("admin", "admin")


def test_a_missing_conversation_logs_no_view(admin_client, db):
    response = admin_client.get(reverse("admin:chat_conversation_change", args=[999999]))

    assert response.status_code == 302  # the admin's "does not exist" redirect
    assert not AuditLogEntry.objects.exists()


def test_the_audit_log_is_read_only_in_the_admin(admin_client, personas):
    conversation = record_chat(personas.acme, created=at(0))
    admin_client.get(page(conversation))
    entry = AuditLogEntry.objects.get()

    assert admin_client.get(reverse("admin:chat_auditlogentry_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:chat_auditlogentry_add")).status_code == 403
    delete = reverse("admin:chat_auditlogentry_delete", args=[entry.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert AuditLogEntry.objects.filter(pk=entry.pk).exists()


# --- search and filters -------------------------------------------------------------


def test_search_finds_words_in_messages_and_keeps_the_other_filters(admin_client, personas):
    shop = Site.objects.create(name="shop")
    wanted = record_chat(
        personas.acme,
        created=at(0),
        closed=at(60),
        messages=[(SenderKind.VISITOR, at(5), "I want a refund please")],
    )
    record_chat(  # open: the status filter drops it
        personas.acme, created=at(0), messages=[(SenderKind.VISITOR, at(5), "refund?")]
    )
    record_chat(  # another site: the site filter drops it
        shop, created=at(0), closed=at(60), messages=[(SenderKind.VISITOR, at(5), "refund")]
    )
    record_chat(personas.acme, created=at(0), closed=at(60))  # no refund

    response = admin_client.get(
        reverse(CHANGELIST),
        {"q": "refund", "status__exact": "closed", "site__id__exact": personas.acme.pk},
    )

    assert listed(response) == [wanted.pk]


def test_search_still_finds_a_visitor_by_email(admin_client, personas):
    personas.v2.email = "ada@engine.example"
    personas.v2.save()
    theirs = record_chat(personas.acme, visitor=personas.v2, created=at(0))
    record_chat(personas.acme, created=at(0))

    response = admin_client.get(reverse(CHANGELIST), {"q": "ada@engine"})

    assert listed(response) == [theirs.pk]


def test_conversations_filter_by_the_dates_they_started(admin_client, personas):
    first = record_chat(personas.acme, created=at(0))
    second = record_chat(personas.acme, created=at(0, days=1))
    third = record_chat(personas.acme, created=at(0, days=2) + timedelta(hours=14))

    from_second = admin_client.get(reverse(CHANGELIST), {"started_from": "2026-03-03"})
    up_to_second = admin_client.get(reverse(CHANGELIST), {"started_to": "2026-03-03"})
    only_third = admin_client.get(
        reverse(CHANGELIST), {"started_from": "2026-03-04", "started_to": "2026-03-04"}
    )

    assert listed(from_second) == [second.pk, third.pk]
    assert listed(up_to_second) == [first.pk, second.pk]
    assert listed(only_third) == [third.pk]


def test_the_date_filter_form_keeps_the_other_filters_and_the_search(admin_client, personas):
    response = admin_client.get(
        reverse(CHANGELIST),
        {"status__exact": "closed", "q": "parcel", "started_from": "2026-03-02"},
    )

    html = response.content.decode()
    assert '<input type="hidden" name="status__exact" value="closed">' in html
    assert '<input type="hidden" name="q" value="parcel">' in html
    assert 'name="started_from" value="2026-03-02"' in html


def test_a_date_that_is_not_a_date_is_refused_by_the_list(admin_client, personas):
    response = admin_client.get(reverse(CHANGELIST), {"started_from": "last tuesday"})

    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


def test_conversations_filter_by_rating(admin_client, personas):
    five = answered_chat(personas.acme, personas.alice, wait=5, reply=5, length=60, rating=5)
    two = answered_chat(personas.acme, personas.alice, wait=5, reply=5, length=60, rating=2)
    one = answered_chat(personas.acme, personas.alice, wait=5, reply=5, length=60, rating=1)
    unrated = answered_chat(personas.acme, personas.alice, wait=5, reply=5, length=60)

    def by(value):
        return listed(admin_client.get(reverse(CHANGELIST), {"rating": value}))

    assert by("5") == [five.pk]
    assert by("low") == sorted([two.pk, one.pk])
    assert by("none") == [unrated.pk]


def test_the_list_shows_each_rating_without_a_query_per_row(
    admin_client, personas, django_assert_max_num_queries
):
    for score in (5, 3, 1):
        answered_chat(personas.acme, personas.alice, wait=5, reply=5, length=60, rating=score)
    admin_client.get(reverse(CHANGELIST))
    with django_assert_max_num_queries(12) as captured:
        response = admin_client.get(reverse(CHANGELIST))
    for _ in range(10):
        answered_chat(personas.acme, personas.bob, wait=5, reply=5, length=60, rating=4)

    with django_assert_max_num_queries(len(captured)):
        response = admin_client.get(reverse(CHANGELIST))

    assert "★★★★★" in response.content.decode()


# --- exports ------------------------------------------------------------------------


def conversation_with_lines(personas, visitor, *lines: str, rating=None) -> Conversation:
    return record_chat(
        personas.acme,
        visitor=visitor,
        created=at(0),
        assigned=at(10),
        agent=personas.alice,
        closed=at(100),
        messages=[(SenderKind.AGENT, at(20 + n), line) for n, line in enumerate(lines)],
        rating=rating,
        comment="Great" if rating else "",
    )


def test_csv_export_has_a_row_per_message_of_exactly_the_selected_conversations(
    admin_client, personas
):
    personas.v1.name, personas.v1.email = "Grace Hopper", "grace@navy.example"
    personas.v1.save()
    first = conversation_with_lines(personas, personas.v1, "Hi Grace", "Bye", rating=5)
    second = conversation_with_lines(personas, personas.v2, "Hello")
    conversation_with_lines(personas, personas.v3, "Not selected")
    Note.objects.create(
        conversation=second, author=personas.bob, body="Asked twice", client_msg_id="n"
    )

    response, body = export(admin_client, "export_csv", [first, second])

    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="conversations-')
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [(int(r["conversation"]), int(r["seq"] or 0) or None, r["body"]) for r in rows] == [
        (first.pk, 1, "Hello?"),
        (first.pk, 2, "Hi Grace"),
        (first.pk, 3, "Bye"),
        (second.pk, 1, "Hello?"),
        (second.pk, 2, "Hello"),
        (second.pk, None, "Asked twice"),
    ]
    assert (rows[-1]["sender"], rows[-1]["sender_agent"]) == ("note", "Bob")
    grace = rows[1]
    assert (grace["site"], grace["visitor_name"], grace["visitor_email"]) == (
        "acme",
        "Grace Hopper",
        "grace@navy.example",
    )
    assert (grace["agent"], grace["sender"], grace["sender_agent"]) == ("Alice", "agent", "Alice")
    assert (grace["status"], grace["rating"], grace["rating_comment"]) == ("closed", "5", "Great")
    assert grace["sent_at"] == at(20).isoformat()
    assert grace["created_at"] == at(0).isoformat()
    assert rows[3]["rating"] == ""


def test_csv_export_defuses_cells_a_spreadsheet_would_run_as_formulas(admin_client, personas):
    personas.v1.name = '=HYPERLINK("http://evil.example")'
    personas.v1.save()
    conversation = conversation_with_lines(personas, personas.v1, "=1+1", "@SUM(A1)", "+cmd")

    _, body = export(admin_client, "export_csv", [conversation])

    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [r["body"] for r in rows][1:] == ["'=1+1", "'@SUM(A1)", "'+cmd"]
    assert rows[0]["visitor_name"].startswith("'=")


def test_json_export_nests_messages_and_notes_in_their_conversation(admin_client, personas):
    first = conversation_with_lines(personas, personas.v1, "Hi", rating=4)
    second = record_chat(personas.acme, visitor=personas.v2, created=at(0), closed=at(50))
    Note.objects.create(
        conversation=first, author=personas.alice, body="VIP", client_msg_id="n", after_seq=2
    )

    response, body = export(admin_client, "export_json", [second, first])

    assert response["Content-Type"] == "application/json; charset=utf-8"
    document = json.loads(body)
    assert [c["id"] for c in document["conversations"]] == [first.pk, second.pk]
    one, two = document["conversations"]
    assert one["agent"] == {"id": personas.alice.pk, "display_name": "Alice"}
    assert one["rating"] == {"score": 4, "comment": "Great"}
    assert [(m["seq"], m["sender"], m["body"]) for m in one["messages"]] == [
        (1, "visitor", "Hello?"),
        (2, "agent", "Hi"),
    ]
    assert [(n["after_seq"], n["author"], n["body"]) for n in one["notes"]] == [(2, "Alice", "VIP")]
    assert (two["agent"], two["rating"], two["status"], two["notes"]) == (None, None, "closed", [])
    assert two["visitor"]["id"] == personas.v2.pk


def test_exporting_all_matches_exports_the_whole_filtered_list(admin_client, personas):
    closed = [conversation_with_lines(personas, None, f"line {n}") for n in range(3)]
    record_chat(personas.acme, created=at(0))  # queued: filtered out

    # "Select all N conversations" posts select_across; the filters ride in the URL.
    response = admin_client.post(
        reverse(CHANGELIST) + "?status__exact=closed",
        {"action": "export_json", "_selected_action": [closed[0].pk], "select_across": "1"},
    )

    exported = [c["id"] for c in json.loads(b"".join(response.streaming_content))["conversations"]]
    assert exported == [c.pk for c in closed]


def test_each_export_writes_an_audit_entry_with_who_what_and_how_many(admin_client, personas):
    first = conversation_with_lines(personas, personas.v1, "Hi")
    second = conversation_with_lines(personas, personas.v2, "Hi")

    export(admin_client, "export_csv", [second, first])

    (entry,) = AuditLogEntry.objects.filter(action=AuditLogEntry.Action.EXPORTED)
    assert entry.actor_label == "admin"
    assert entry.details == {
        "format": "csv",
        "count": 2,
        "conversation_ids": [first.pk, second.pk],
    }


def test_an_export_streams_with_memory_that_does_not_grow_with_the_messages(personas):
    """30,000 messages of 300 characters (9 MB of CSV) pass through a fraction of that."""
    conversations = [conversation_with_lines(personas, None) for _ in range(60)]
    line = "x" * 300
    Message.objects.bulk_create(
        Message(conversation=c, seq=10 + n, sender=SenderKind.VISITOR, body=line)
        for c in conversations
        for n in range(500)
    )
    selected = Conversation.objects.filter(pk__in=[c.pk for c in conversations])

    tracemalloc.start()
    try:
        total = rows = 0
        for chunk in transcripts.export_csv(selected):
            total += len(chunk)
            rows += chunk.count("\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert rows == 1 + 60 * 501
    assert total > 9_000_000
    # Holding the messages, or the output, would take more than the whole output.
    assert peak < total / 3, f"peak {peak} bytes while streaming {total}"


def test_an_export_skips_conversations_deleted_while_it_streams(personas):
    kept = conversation_with_lines(personas, personas.v1, "kept")
    gone = conversation_with_lines(personas, personas.v2, "gone")
    selected = Conversation.objects.filter(pk__in=[kept.pk, gone.pk])
    stream = transcripts.export_json(selected)
    head = next(stream)
    ConversationRating.objects.filter(conversation=gone).delete()
    Conversation.objects.filter(pk=gone.pk).delete()

    body = head + "".join(stream)

    assert [c["id"] for c in json.loads(body)["conversations"]] == [kept.pk]


# --- files in exports, and every turn in the lifecycle (issue 16) -----------------------


def test_exports_carry_each_messages_file(admin_client, personas):
    conversation = conversation_with_lines(personas, personas.v1, "Here is the invoice")
    message = conversation.messages.get(seq=2)
    file = Attachment.objects.create(
        conversation=conversation,
        message=message,
        uploaded_by=SenderKind.AGENT,
        uploaded_by_agent=personas.alice,
        name="invoice.pdf",
        content_type="application/pdf",
        size=48213,
        file="attachments/invoice.pdf",
    )
    url = reverse("attachment", args=[file.pk])

    _, csv_body = export(admin_client, "export_csv", [conversation])
    _, json_body = export(admin_client, "export_json", [conversation])

    rows = list(csv.DictReader(io.StringIO(csv_body.decode())))
    files = [
        (
            r["seq"],
            r["attachment_name"],
            r["attachment_type"],
            r["attachment_size"],
            r["attachment_url"],
        )
        for r in rows
    ]
    assert files == [("1", "", "", "", ""), ("2", "invoice.pdf", "application/pdf", "48213", url)]
    [messages] = [c["messages"] for c in json.loads(json_body)["conversations"]]
    assert "attachment" not in messages[0]
    assert messages[1]["attachment"] == {
        "name": "invoice.pdf",
        "content_type": "application/pdf",
        "size": 48213,
        "url": url,
    }


@pytest.mark.django_db(transaction=True)
def test_the_lifecycle_shows_every_turn_in_order_and_the_wait_ends_at_the_first(
    admin_client, personas
):
    from chat.conversations import routing, sending
    from chat.conversations.actors import Actor

    posted = sending.post_message(Actor.visitor(personas.v1.pk), client_msg_id="1", body="Hi")
    chat = Conversation.objects.get(pk=posted.message["conversation"])
    sending.post_message(
        Actor.agent(personas.alice.pk), conversation_id=chat.pk, client_msg_id="2", body="Alice"
    )
    routing.transfer_conversation(
        agent_id=personas.alice.pk, conversation_id=chat.pk, to_agent_id=personas.bob.pk
    )
    routing.transfer_conversation(
        agent_id=personas.bob.pk, conversation_id=chat.pk, to_agent_id=None
    )
    chat.refresh_from_db()
    closing.close_conversation(Actor.agent(chat.agent_id), conversation_id=chat.pk)

    response = admin_client.get(page(chat))

    html = response.content.decode()
    order = [
        "started the chat",
        "Assigned to Alice",
        "Alice transferred the chat to Bob",
        "Bob sent the chat back to the queue",
        "Assigned to Alice",
        "Closed by the agent",
    ]
    at_ = 0
    for line in order:  # each after the one before
        at_ = html.index(line, at_) + len(line)
    first_turn = chat.assignments.order_by("started_at").first()
    assert response.context["timings"].wait == first_turn.started_at - chat.created_at


def test_the_transcript_page_and_its_timeline_read_in_the_admins_language(admin_client, personas):
    conversation = record_chat(
        personas.acme,
        visitor=personas.v1,
        created=at(0),
        assigned=at(90),
        agent=personas.alice,
        closed=at(600),
        messages=[(SenderKind.VISITOR, at(30), "Mon colis n'est jamais arrivé")],
        rating=4,
    )
    admin_client.cookies["django_language"] = "fr"

    html = admin_client.get(page(conversation)).content.decode()

    for shown in (
        "Résumé de la conversation",
        "Attribuée à Alice",
        "Fermée par le visiteur",
        "1 min 30 s",
        "Tous les champs enregistrés",
    ):
        assert shown in html, shown


def test_the_audit_log_lists_its_columns_and_actions_in_the_admins_language(admin_client, personas):
    conversation = record_chat(personas.acme, created=at(0), closed=at(60))
    admin_client.get(page(conversation))
    admin_client.cookies["django_language"] = "es"

    html = admin_client.get(reverse("admin:chat_auditlogentry_changelist")).content.decode()

    for shown in ("registro de auditoría", "Quién", "Acción", "consultada"):
        assert shown in html, shown
