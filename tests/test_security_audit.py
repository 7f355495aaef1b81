"""The admin's audit trail, from the angle of an insider reading transcripts: every
view and export of a transcript is recorded with who and which, the record copies no
message text, and nobody can edit or delete it from the admin."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from chat.conversations import sending
from chat.conversations.actors import Actor
from chat.models import AuditLogEntry, Conversation

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "My card number is 4111 1111 1111 1111"


def chat(visitor, body: str) -> int:
    posted = sending.post_message(
        Actor.visitor(visitor.id), client_msg_id=f"{visitor.id}-{body[:8]}", body=body
    )
    return posted.message["conversation"]


def staff(username: str, *permissions: str) -> Client:
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=permissions))
    client = Client()
    client.force_login(user)
    return client


def entries(action: str) -> list[AuditLogEntry]:
    return list(AuditLogEntry.objects.filter(action=action).order_by("id"))


def test_viewing_a_transcript_records_who_viewed_which_and_copies_none_of_it(personas):
    conversation_id = chat(personas.v1, SECRET)
    reader = staff("reader", "view_conversation", "view_message")

    page = reader.get(f"/admin/chat/conversation/{conversation_id}/change/")

    assert page.status_code == 200
    assert SECRET in page.content.decode()
    (entry,) = entries(AuditLogEntry.Action.VIEWED)
    assert (entry.actor_label, entry.object_type, entry.object_id) == (
        "reader",
        "conversation",
        str(conversation_id),
    )
    assert "4111" not in str(entry.details)


def test_exporting_transcripts_records_who_exported_exactly_which(personas):
    first = chat(personas.v1, SECRET)
    second = chat(personas.v2, "Where is my parcel?")
    chat(personas.v3, "Not exported")
    exporter = staff("exporter", "view_conversation", "view_message")

    response = exporter.post(
        "/admin/chat/conversation/",
        {"action": "export_csv", "_selected_action": [first, second]},
    )
    exported = b"".join(response.streaming_content).decode()

    assert response.status_code == 200
    assert SECRET in exported
    (entry,) = entries(AuditLogEntry.Action.EXPORTED)
    assert entry.actor_label == "exporter"
    assert sorted(entry.details["conversation_ids"]) == sorted([first, second])
    assert "4111" not in str(entry.details)


def test_staff_without_permission_to_view_transcripts_see_none_and_log_no_view(personas):
    conversation_id = chat(personas.v1, SECRET)
    outsider = staff("outsider")

    page = outsider.get(f"/admin/chat/conversation/{conversation_id}/change/")

    assert page.status_code == 403
    assert SECRET not in page.content.decode()
    assert entries(AuditLogEntry.Action.VIEWED) == []


def test_nobody_can_edit_or_delete_the_audit_log_from_the_admin(admin_client, personas):
    conversation_id = chat(personas.v1, SECRET)
    admin_client.get(f"/admin/chat/conversation/{conversation_id}/change/")
    (entry,) = entries(AuditLogEntry.Action.VIEWED)
    base = f"/admin/chat/auditlogentry/{entry.pk}"

    edited = admin_client.post(f"{base}/change/", {"actor_label": "someone else"})
    deleted = admin_client.post(f"{base}/delete/", {"post": "yes"})
    added = admin_client.get("/admin/chat/auditlogentry/add/")

    assert edited.status_code == 403
    assert deleted.status_code == 403
    assert added.status_code == 403
    entry.refresh_from_db()
    assert entry.actor_label == "admin"
    assert Conversation.objects.filter(pk=conversation_id).exists()
