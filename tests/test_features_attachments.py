"""Attachments: what may be uploaded (judged by content, within the size limit), who may
download it (the conversation's participants only, with safe headers), how a message
carries it to the other side, and that files leave storage with their rows."""

import io
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image

from chat import errors, lifecycle, selectors
from chat.conversations import closing, sending
from chat.conversations.actors import Actor
from chat.models import Attachment, AuditLogEntry, Conversation, Site
from chat.realtime import groups
from tests import ws
from tests.conftest import make_agent, make_visitor

pytestmark = pytest.mark.django_db(transaction=True)

ACME = "https://acme.example"
UPLOAD_URL = "/api/v1/attachments"


@pytest.fixture(autouse=True)
def media(settings, tmp_path) -> Path:
    """Uploads land in this test's own folder."""
    root = tmp_path / "media"
    settings.MEDIA_ROOT = root
    return root


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --- files to upload --------------------------------------------------------------


def png_bytes(size=(800, 600), color=(200, 30, 30, 255)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, color).save(out, "PNG")
    return out.getvalue()


def jpeg_bytes(size=(640, 480)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (20, 90, 200)).save(out, "JPEG")
    return out.getvalue()


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"


def office_bytes(main_type: str, part: str, *, macros: bool = False) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/'
            f'2006/content-types"><Override PartName="/{part}" ContentType="{main_type}"/>'
            "</Types>",
        )
        archive.writestr(part, "<document/>")
        if macros:
            archive.writestr("word/vbaProject.bin", b"\x00macro")
    return out.getvalue()


DOCX_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
DOCM_MAIN = "application/vnd.ms-word.document.macroEnabled.main+xml"


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    # The browser's Content-Type is a lie the server never reads.
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


# --- participants -----------------------------------------------------------------


def open_chat(visitor, body="My kettle arrived broken") -> Conversation:
    posted = sending.post_message(
        Actor.visitor(visitor.id), client_msg_id=f"open-{visitor.id}", body=body
    )
    return Conversation.objects.get(pk=posted.message["conversation"])


def visitor_post(personas, visitor, name, data, *, origin=ACME):
    return Client().post(
        UPLOAD_URL,
        {"file": upload(name, data)},
        HTTP_AUTHORIZATION=f"Bearer {personas.token(visitor)}",
        HTTP_ORIGIN=origin,
    )


def agent_client(agent) -> Client:
    client = Client()
    client.force_login(agent.user)
    return client


def agent_post(agent, conversation_id, name, data):
    return agent_client(agent).post(
        UPLOAD_URL, {"conversation": str(conversation_id), "file": upload(name, data)}
    )


def visitor_get(personas, visitor, url):
    return Client().get(url, HTTP_AUTHORIZATION=f"Bearer {personas.token(visitor)}")


def sent_by_visitor(personas, visitor, name="broken.png", data=None, body="See the photo"):
    """A visitor's upload, sent in a message; (conversation, attachment wire dict)."""
    chat = open_chat(visitor)
    response = visitor_post(personas, visitor, name, data or png_bytes())
    assert response.status_code == 201, response.json()
    posted = sending.post_message(
        Actor.visitor(visitor.id),
        client_msg_id="with-file",
        body=body,
        attachment_id=response.json()["id"],
    )
    return chat, posted.message["attachment"]


# --- what may be uploaded -----------------------------------------------------------


def test_visitor_uploads_an_image_which_is_stored_pending_with_a_small_thumbnail(personas, media):
    chat = open_chat(personas.v1)

    response = visitor_post(personas, personas.v1, "broken kettle.png", png_bytes())

    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "broken kettle.png"
    assert body["content_type"] == "image/png"
    assert body["url"] == f"/attachments/{body['id']}/"
    assert body["thumbnail_url"] == f"/attachments/{body['id']}/thumbnail/"
    attachment = Attachment.objects.get(pk=body["id"])
    assert (attachment.conversation_id, attachment.message_id) == (chat.id, None)
    assert attachment.uploaded_by == "visitor"
    # The visitor's file name never becomes a path in storage.
    assert "kettle" not in attachment.file.name
    assert len(stored_files(media)) == 2
    with Image.open(attachment.thumbnail.open("rb")) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) == 320


@pytest.mark.parametrize(
    ("name", "data", "content_type"),
    [
        ("photo.JPG", jpeg_bytes(), "image/jpeg"),
        ("invoice.pdf", PDF, "application/pdf"),
        ("notes.txt", "Order 1042: Grüße\n".encode(), "text/plain"),
        ("letter.docx", office_bytes(DOCX_MAIN, "word/document.xml"), None),
    ],
)
def test_allowlisted_documents_are_accepted_with_the_type_their_content_shows(
    personas, name, data, content_type
):
    open_chat(personas.v1)
    response = visitor_post(personas, personas.v1, name, data)
    assert response.status_code == 201, response.json()
    expected = content_type or (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    )
    assert response.json()["content_type"] == expected
    assert (response.json()["thumbnail_url"] is None) == (not expected.startswith("image/"))


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        # A real PNG named like a PDF: the content decides, and the name disagrees.
        ("invoice.pdf", png_bytes(), "type_mismatch"),
        # HTML dressed as an image: not an image at all.
        ("cute-cat.png", HTML, "type_mismatch"),
        # A PNG signature followed by garbage cannot be decoded.
        ("fake.png", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50, "unsupported_type"),
        ("setup.exe", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00", "unsupported_type"),
        ("vector.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', None),
        ("macro.docx", office_bytes(DOCM_MAIN, "word/document.xml", macros=True), None),
    ],
)
def test_files_refused_by_content_store_nothing(personas, media, name, data, code):
    open_chat(personas.v1)

    response = visitor_post(personas, personas.v1, name, data)

    assert response.status_code == 415
    assert response.json()["error"] in ({code} if code else {"type_mismatch", "unsupported_type"})
    assert not Attachment.objects.exists()
    assert stored_files(media) == []


def test_a_file_over_the_size_limit_is_refused_with_413_and_the_limit(personas, settings, media):
    settings.SUPPORTDESK_ATTACHMENT_MAX_BYTES = 2000
    open_chat(personas.v1)

    just_over = visitor_post(personas, personas.v1, "notes.txt", b"x" * 2001)
    far_over = visitor_post(personas, personas.v1, "notes.txt", b"x" * 100_000)
    at_the_limit = visitor_post(personas, personas.v1, "notes.txt", b"x" * 2000)

    for response in (just_over, far_over):
        assert response.status_code == 413
        assert response.json()["error"] == "too_large"
        assert response.json()["max_bytes"] == 2000
    assert at_the_limit.status_code == 201
    assert Attachment.objects.count() == 1


def test_an_empty_or_missing_file_is_a_bad_request(personas):
    open_chat(personas.v1)
    empty = visitor_post(personas, personas.v1, "empty.txt", b"")
    missing = Client().post(
        UPLOAD_URL, {}, HTTP_AUTHORIZATION=f"Bearer {personas.token(personas.v1)}"
    )
    assert (empty.status_code, empty.json()["error"]) == (400, "bad_request")
    assert (missing.status_code, missing.json()["error"]) == (400, "bad_request")


def test_a_file_name_loses_folders_and_direction_tricks(personas):
    open_chat(personas.v1)
    response = visitor_post(personas, personas.v1, "invoice\u202egnp.txt", b"hello")
    assert response.status_code == 201
    assert response.json()["name"] == "invoicegnp.txt"


# --- who may upload -----------------------------------------------------------------


def test_a_visitor_without_an_open_chat_is_told_to_write_first(personas):
    response = visitor_post(personas, personas.v1, "photo.png", png_bytes())
    assert (response.status_code, response.json()["error"]) == (409, "no_conversation")


def test_visitor_upload_refuses_unknown_tokens_and_foreign_origins(personas):
    open_chat(personas.v1)
    unknown = Client().post(
        UPLOAD_URL, {"file": upload("a.txt", b"hi")}, HTTP_AUTHORIZATION="Bearer nope"
    )
    foreign = visitor_post(personas, personas.v1, "a.txt", b"hi", origin="https://evil.example")
    assert unknown.status_code == 401
    assert (foreign.status_code, foreign.json()["error"]) == (403, "forbidden")
    assert not Attachment.objects.exists()


def test_visitor_uploads_are_rate_limited(personas, settings):
    settings.SUPPORTDESK_LIMIT_VISITOR_UPLOADS = "2 per minute"
    open_chat(personas.v1)
    codes = [visitor_post(personas, personas.v1, "a.txt", b"hi").status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    assert Attachment.objects.count() == 2


def test_agent_uploads_into_their_own_open_chat_only(personas):
    chat = open_chat(personas.v1)
    assert chat.agent_id == personas.alice.id

    mine = agent_post(personas.alice, chat.id, "label.pdf", PDF)
    not_mine = agent_post(personas.bob, chat.id, "label.pdf", PDF)
    no_such = agent_post(personas.alice, 999_999, "label.pdf", PDF)

    assert mine.status_code == 201
    assert Attachment.objects.get().uploaded_by_agent_id == personas.alice.id
    assert (not_mine.status_code, not_mine.json()["error"]) == (404, "not_found")
    assert no_such.status_code == 404

    closing.close_conversation(Actor.agent(personas.alice.id), conversation_id=chat.id)
    closed = agent_post(personas.alice, chat.id, "label.pdf", PDF)
    assert (closed.status_code, closed.json()["error"]) == (409, "conversation_closed")
    assert Attachment.objects.count() == 1


def test_agent_uploads_need_the_csrf_token_and_a_session(personas):
    chat = open_chat(personas.v1)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(personas.alice.user)
    forged = strict.post(UPLOAD_URL, {"conversation": str(chat.id), "file": upload("a.pdf", PDF)})
    anonymous = Client().post(
        UPLOAD_URL, {"conversation": str(chat.id), "file": upload("a.pdf", PDF)}
    )
    assert forged.status_code == 403
    assert anonymous.status_code == 403
    assert not Attachment.objects.exists()


# --- sending it ---------------------------------------------------------------------


def test_a_message_names_the_upload_and_the_agent_gets_the_attachment_object(
    personas, capture_broadcasts
):
    chat = open_chat(personas.v1)
    uploaded = visitor_post(personas, personas.v1, "broken.png", png_bytes()).json()
    capture_broadcasts.clear()

    posted = sending.post_message(
        Actor.visitor(personas.v1.id), client_msg_id="c-2", body="", attachment_id=uploaded["id"]
    )

    assert posted.message["body"] == "" and posted.message["attachment"] == uploaded
    [to_alice] = capture_broadcasts.frames(groups.agent_group(personas.alice.id), "message")
    assert to_alice["attachment"]["name"] == "broken.png"
    assert to_alice["attachment"]["thumbnail_url"] == uploaded["thumbnail_url"]
    # History shows it too; plain messages carry no `attachment` key at all.
    history = selectors.messages_after(chat.id, 0)
    assert "attachment" not in history[0]
    assert history[1]["attachment"] == uploaded
    assert Attachment.objects.get().message_id is not None


def test_someone_elses_or_an_already_sent_upload_cannot_be_named(personas):
    open_chat(personas.v1)
    open_chat(personas.v2)
    theirs = visitor_post(personas, personas.v2, "a.txt", b"v2's file").json()
    mine = visitor_post(personas, personas.v1, "b.txt", b"v1's file").json()

    with pytest.raises(errors.AttachmentNotFound):
        sending.post_message(
            Actor.visitor(personas.v1.id), client_msg_id="c-x", body="", attachment_id=theirs["id"]
        )
    sending.post_message(
        Actor.visitor(personas.v1.id), client_msg_id="c-1", body="", attachment_id=mine["id"]
    )
    with pytest.raises(errors.AttachmentNotFound):
        sending.post_message(
            Actor.visitor(personas.v1.id), client_msg_id="c-2", body="", attachment_id=mine["id"]
        )
    assert list(Attachment.objects.filter(message__isnull=True).values_list("pk", flat=True)) == [
        theirs["id"]
    ]


def test_an_agent_cannot_send_the_visitors_upload_as_their_own(personas):
    chat = open_chat(personas.v1)
    visitors = visitor_post(personas, personas.v1, "a.txt", b"mine").json()
    with pytest.raises(errors.AttachmentNotFound):
        sending.post_message(
            Actor.agent(personas.alice.id),
            conversation_id=chat.id,
            client_msg_id="a-1",
            body="",
            attachment_id=visitors["id"],
        )


def test_a_retry_of_a_message_with_a_file_gets_the_same_message_back(personas):
    open_chat(personas.v1)
    uploaded = visitor_post(personas, personas.v1, "a.txt", b"hello").json()
    first = sending.post_message(
        Actor.visitor(personas.v1.id),
        client_msg_id="c-2",
        body="file",
        attachment_id=uploaded["id"],
    )
    again = sending.post_message(
        Actor.visitor(personas.v1.id),
        client_msg_id="c-2",
        body="file",
        attachment_id=uploaded["id"],
    )
    assert not again.created
    assert again.message == first.message


def _data_queries(context: CaptureQueriesContext) -> int:
    control = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "BEGIN", "COMMIT")
    # Statements bound on the server are recorded with no SQL (services._hot_cursor).
    sqls = [q["sql"] or "" for q in context.captured_queries]
    return len([sql for sql in sqls if not sql.upper().startswith(control)])


def test_a_message_with_a_file_costs_a_fixed_few_queries(personas):
    open_chat(personas.v1)
    uploaded = visitor_post(personas, personas.v1, "a.txt", b"hello").json()
    with CaptureQueriesContext(connection) as plain:
        sending.post_message(Actor.visitor(personas.v1.id), client_msg_id="p", body="hi")
    with CaptureQueriesContext(connection) as with_file:
        sending.post_message(
            Actor.visitor(personas.v1.id), client_msg_id="f", body="", attachment_id=uploaded["id"]
        )
    # A plain message is one statement, three on SQLite (messages.append_at_once); one
    # with a file takes the full path (lock, update, insert, the look for a webhook's
    # interest in it) and claims and links the upload.
    assert _data_queries(plain) <= 3
    assert _data_queries(with_file) == 4 + 2


# --- who may download -----------------------------------------------------------------


def test_the_visitor_and_the_agent_download_it_as_an_attachment_with_safe_headers(personas):
    _chat, attachment = sent_by_visitor(personas, personas.v1, name="broken kettle.png")

    as_visitor = visitor_get(personas, personas.v1, attachment["url"])
    as_alice = agent_client(personas.alice).get(attachment["url"])

    for response in (as_visitor, as_alice):
        assert response.status_code == 200
        assert response["Content-Type"] == "image/png"
        assert response["Content-Disposition"] == 'attachment; filename="broken kettle.png"'
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Security-Policy"].startswith("default-src 'none'")
        assert b"".join(response.streaming_content) == png_bytes()
    thumb = visitor_get(personas, personas.v1, attachment["thumbnail_url"])
    assert thumb.status_code == 200
    assert thumb["Content-Type"] == "image/jpeg"
    assert thumb["Content-Disposition"].startswith("inline;")
    assert thumb["X-Content-Type-Options"] == "nosniff"


def test_a_text_file_that_is_html_is_still_served_as_a_plain_text_download(personas):
    _chat, attachment = sent_by_visitor(personas, personas.v1, name="page.txt", data=HTML)
    response = agent_client(personas.alice).get(attachment["url"])
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment;")


def test_non_participants_get_the_same_404_as_for_a_missing_attachment(personas):
    _chat, attachment = sent_by_visitor(personas, personas.v1)
    open_chat(personas.v2)  # v2 chats with bob
    missing_url = "/attachments/999999/"

    answers = {
        "other visitor": visitor_get(personas, personas.v2, attachment["url"]),
        "other agent": agent_client(personas.bob).get(attachment["url"]),
        "nobody": Client().get(attachment["url"]),
        "bad token": Client().get(attachment["url"], HTTP_AUTHORIZATION="Bearer nope"),
        "other visitor, thumbnail": visitor_get(personas, personas.v2, attachment["thumbnail_url"]),
    }
    reference = visitor_get(personas, personas.v1, missing_url)

    assert reference.status_code == 404
    for who, response in answers.items():
        assert response.status_code == 404, who
        assert response.json() == reference.json(), who


def test_an_agents_unsent_upload_is_theirs_alone_until_sent(personas):
    chat = open_chat(personas.v1)
    pending = agent_post(personas.alice, chat.id, "label.pdf", PDF).json()

    assert agent_client(personas.alice).get(pending["url"]).status_code == 200
    assert visitor_get(personas, personas.v1, pending["url"]).status_code == 404

    sending.post_message(
        Actor.agent(personas.alice.id),
        conversation_id=chat.id,
        client_msg_id="a-1",
        body="Your return label",
        attachment_id=pending["id"],
    )
    assert visitor_get(personas, personas.v1, pending["url"]).status_code == 200


def test_a_supervisor_and_an_admin_may_read_it_and_the_admins_reading_is_logged(personas):
    _chat, attachment = sent_by_visitor(personas, personas.v1)
    supervisor = make_agent("sam", 1)
    supervisor.is_supervisor = True
    supervisor.save(update_fields=["is_supervisor"])
    admin = supervisor.user.__class__.objects.create_superuser("root", password="root-pass")
    admin_client = Client()
    admin_client.force_login(admin)

    assert agent_client(supervisor).get(attachment["url"]).status_code == 200
    assert admin_client.get(attachment["url"]).status_code == 200
    entry = AuditLogEntry.objects.get(object_type="attachment")
    assert (entry.actor_label, entry.object_id) == ("root", str(attachment["id"]))


def test_the_admin_transcript_links_the_attachment(personas):
    chat, attachment = sent_by_visitor(personas, personas.v1, name="broken kettle.png")
    admin = personas.alice.user.__class__.objects.create_superuser("root", password="root-pass")
    client = Client()
    client.force_login(admin)

    page = client.get(f"/admin/chat/conversation/{chat.id}/change/").content.decode()

    assert f'href="{attachment["url"]}" download>broken kettle.png</a>' in page


def test_a_visitor_of_another_site_cannot_read_it_with_its_own_token(personas):
    _chat, attachment = sent_by_visitor(personas, personas.v1)
    other_site = Site.objects.create(name="other", allowed_origins=["https://other.example"])
    _stranger, token = make_visitor(other_site)
    response = Client().get(attachment["url"], HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 404


# --- files leave with their rows ------------------------------------------------------


def test_the_sweep_deletes_uploads_nobody_sent_with_their_files(personas, media, settings):
    settings.SUPPORTDESK_ATTACHMENT_PENDING_TTL = 3600
    _chat, sent = sent_by_visitor(personas, personas.v1)
    stale = visitor_post(personas, personas.v1, "stale.png", png_bytes()).json()
    fresh = visitor_post(personas, personas.v1, "fresh.txt", b"just now").json()
    Attachment.objects.filter(pk__in=[sent["id"], stale["id"]]).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    stale_files = {
        Path(Attachment.objects.get(pk=stale["id"]).file.path),
        Path(Attachment.objects.get(pk=stale["id"]).thumbnail.path),
    }
    assert all(path.exists() for path in stale_files)

    closing.sweep()

    assert set(Attachment.objects.values_list("pk", flat=True)) == {sent["id"], fresh["id"]}
    assert not any(path.exists() for path in stale_files)
    assert len(stored_files(media)) == 3  # the sent image and its thumbnail, the fresh text


def test_a_retention_purge_deletes_the_files_of_purged_conversations(personas, media):
    chat, _attachment = sent_by_visitor(personas, personas.v1)
    closing.close_conversation(Actor.agent(personas.alice.id), conversation_id=chat.id)
    Conversation.objects.filter(pk=chat.id).update(closed_at=timezone.now() - timedelta(days=40))
    Site.objects.filter(pk=personas.acme.pk).update(retention_days=30)
    assert len(stored_files(media)) == 2

    lifecycle.purge_expired_transcripts(actor_label="test")

    assert not Attachment.objects.exists()
    assert stored_files(media) == []


def test_erasing_a_visitor_deletes_every_attachment_of_their_chats_files_included(personas, media):
    chat, _attachment = sent_by_visitor(personas, personas.v1)
    from_alice = agent_post(personas.alice, chat.id, "label.pdf", PDF).json()
    sending.post_message(
        Actor.agent(personas.alice.id),
        conversation_id=chat.id,
        client_msg_id="a-1",
        body="",
        attachment_id=from_alice["id"],
    )
    _other_chat, others = sent_by_visitor(personas, personas.v2, name="v2.png")
    assert len(stored_files(media)) == 5

    erasure = lifecycle.erase_visitor(
        visitor_id=personas.v1.id, actor_label="test", matched_by="id"
    )

    assert erasure.attachments == 2
    assert list(Attachment.objects.values_list("pk", flat=True)) == [others["id"]]
    assert len(stored_files(media)) == 2  # v2's image and thumbnail only
    assert "attachment" not in selectors.messages_after(chat.id, 0)[1]


def test_deleting_a_conversation_in_a_rolled_back_transaction_keeps_the_files(personas, media):
    from django.db import transaction

    chat, _attachment = sent_by_visitor(personas, personas.v1)
    with pytest.raises(RuntimeError), transaction.atomic():
        Conversation.objects.filter(pk=chat.id).delete()
        raise RuntimeError("changed my mind")
    assert len(stored_files(media)) == 2
    Conversation.objects.filter(pk=chat.id).delete()
    assert stored_files(media) == []


# --- sockets --------------------------------------------------------------------


async def test_visitor_sends_a_file_and_the_agent_gets_it_in_the_message_frame(personas, sockets):
    visitor, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    alice, _ = await sockets.agent(personas.alice)
    await visitor.send_json_to({"type": "message.send", "client_msg_id": "c-1", "body": "Hi"})
    await ws.receive_until(visitor, "message.ack")
    chat_id = (await ws.receive_until(alice, "conversation.assigned"))["conversation"]["id"]
    uploaded = await ws.db(
        lambda: visitor_post(personas, personas.v1, "broken.png", png_bytes()).json()
    )

    await visitor.send_json_to(
        {"type": "message.send", "client_msg_id": "c-2", "attachment": uploaded["id"]}
    )

    ack = await ws.receive_until(visitor, "message.ack")
    assert (ack["conversation"], ack["seq"]) == (chat_id, 2)
    message = await ws.receive_until(alice, "message")
    assert message["seq"] == 2 and message["body"] == ""
    assert message["attachment"] == uploaded
    # The agent's sync (and so a reload) shows it too.
    await alice.send_json_to({"type": "sync", "conversation": chat_id, "after_seq": 1})
    assert (await ws.receive_until(alice, "sync"))["messages"][0]["attachment"] == uploaded


async def test_agent_sends_a_file_and_the_visitor_gets_it_live_and_in_ready(personas, sockets):
    visitor, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    alice, _ = await sockets.agent(personas.alice)
    await visitor.send_json_to({"type": "message.send", "client_msg_id": "c-1", "body": "Hi"})
    chat_id = (await ws.receive_until(alice, "conversation.assigned"))["conversation"]["id"]
    uploaded = await ws.db(lambda: agent_post(personas.alice, chat_id, "label.pdf", PDF).json())

    await alice.send_json_to(
        {
            "type": "message.send",
            "conversation": chat_id,
            "client_msg_id": "a-1",
            "body": "Your return label",
            "attachment": uploaded["id"],
        }
    )

    message = await ws.receive_until(visitor, "message")
    assert message["attachment"]["name"] == "label.pdf"
    assert message["attachment"]["thumbnail_url"] is None
    _again, ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    assert ready["messages"][-1]["attachment"] == uploaded


async def test_naming_someone_elses_upload_is_refused_as_not_found(personas, sockets):
    visitor, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    other, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v2))
    for sock, client_msg_id in ((visitor, "c-1"), (other, "o-1")):
        await sock.send_json_to(
            {"type": "message.send", "client_msg_id": client_msg_id, "body": "Hello"}
        )
        await ws.receive_until(sock, "message.ack")
    theirs = await ws.db(lambda: visitor_post(personas, personas.v2, "a.txt", b"v2").json())

    await visitor.send_json_to(
        {"type": "message.send", "client_msg_id": "c-2", "body": "", "attachment": theirs["id"]}
    )

    error = await ws.receive_until(visitor, "error")
    assert (error["code"], error["client_msg_id"]) == ("not_found", "c-2")
    assert await ws.db(lambda: Attachment.objects.get(pk=theirs["id"]).message_id) is None


async def test_an_empty_body_without_a_file_and_a_malformed_attachment_are_bad_frames(
    personas, sockets
):
    visitor, _ = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    await visitor.send_json_to({"type": "message.send", "client_msg_id": "c-1", "body": " "})
    assert (await ws.receive_until(visitor, "error"))["code"] == "bad_frame"
    await visitor.send_json_to(
        {"type": "message.send", "client_msg_id": "c-2", "body": "x", "attachment": "7"}
    )
    error = await ws.receive_until(visitor, "error")
    assert (error["code"], error["client_msg_id"]) == ("bad_frame", "c-2")
