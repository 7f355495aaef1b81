"""The transcript by email: a visitor asks for its latest chat to be mailed to an address
it gives; the mail (text and HTML) holds the messages and never the agents' notes, the
address is kept if the visitor had none, and the requests are limited."""

import smtplib

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend

from chat import errors, ratelimits, transcript_email
from chat.conversations import closing, sending, sessions
from chat.conversations.actors import Actor
from chat.models import Visitor
from tests import ws

pytestmark = pytest.mark.django_db(transaction=True)


def chat_with_a_note(personas) -> int:
    """v1 chats with alice, who writes a note and a reply; then v1 closes the chat."""
    posted = sending.post_message(
        Actor.visitor(personas.v1.id), client_msg_id="c-1", body="My kettle whistles <loudly>"
    )
    conversation = posted.message["conversation"]
    sending.post_note(
        agent_id=personas.alice.id,
        conversation_id=conversation,
        client_msg_id="n-1",
        body="Internal: refund approved by Sam",
    )
    sending.post_message(
        Actor.agent(personas.alice.id),
        conversation_id=conversation,
        client_msg_id="a-1",
        body="That is by design. Enjoy!",
    )
    closing.close_conversation(Actor.visitor(personas.v1.id))
    return conversation


def mail_transcript(personas, email: str = "dana@example.com") -> transcript_email.TranscriptEmail:
    transcript = sessions.prepare_transcript_email(visitor_id=personas.v1.id, email=email)
    assert transcript_email.send(transcript)
    return transcript


# --- services ------------------------------------------------------------------


def test_the_transcript_mail_holds_every_message_and_never_a_note(personas, settings):
    settings.DEFAULT_FROM_EMAIL = "help@acme.example"
    conversation = chat_with_a_note(personas)

    transcript = mail_transcript(personas)

    assert transcript.conversation_id == conversation
    [sent] = mail.outbox
    assert sent.to == ["dana@example.com"]
    assert sent.from_email == "help@acme.example"
    assert sent.subject == "Your chat with acme"
    assert "You (" in sent.body and "My kettle whistles <loudly>" in sent.body
    assert "Alice (" in sent.body and "That is by design. Enjoy!" in sent.body
    [(html, mimetype)] = sent.alternatives
    assert mimetype == "text/html"
    assert "My kettle whistles &lt;loudly&gt;" in html  # escaped, never markup
    assert "That is by design. Enjoy!" in html
    for part in (sent.body, html):
        assert "refund approved" not in part
        assert "Internal" not in part


def test_times_in_the_mail_are_the_visitors_own(personas):
    chat_with_a_note(personas)
    Visitor.objects.filter(pk=personas.v1.pk).update(timezone="Asia/Kolkata")
    mail_transcript(personas)
    assert "(Asia/Kolkata)" in mail.outbox[0].body


def test_the_address_is_kept_for_a_visitor_without_one_and_never_replaces_one(personas):
    chat_with_a_note(personas)
    mail_transcript(personas, "first@example.com")
    mail_transcript(personas, "second@example.com")

    assert Visitor.objects.get(pk=personas.v1.pk).email == "first@example.com"
    assert [m.to for m in mail.outbox] == [["first@example.com"], ["second@example.com"]]


def test_a_visitor_without_a_chat_has_no_transcript(personas):
    with pytest.raises(errors.NotFound):
        sessions.prepare_transcript_email(visitor_id=personas.v1.id, email="dana@example.com")
    assert Visitor.objects.get(pk=personas.v1.pk).email == ""


def test_three_transcripts_a_conversation_an_hour_then_refused_before_anything_changes(
    personas,
):
    chat_with_a_note(personas)
    limits = ratelimits.VisitorLimits(visitor_id=personas.v1.id, client="203.0.113.9")
    for n in range(3):
        sessions.prepare_transcript_email(
            visitor_id=personas.v1.id,
            email=f"v{n}@example.com",
            before_sending=limits.transcript_email,
        )
    Visitor.objects.filter(pk=personas.v1.pk).update(email="")

    with pytest.raises(ratelimits.RateLimited):
        sessions.prepare_transcript_email(
            visitor_id=personas.v1.id,
            email="fourth@example.com",
            before_sending=limits.transcript_email,
        )
    assert Visitor.objects.get(pk=personas.v1.pk).email == ""  # refused: nothing stored


def test_one_address_asking_for_many_chats_transcripts_is_refused_past_its_limit(
    personas, settings
):
    settings.SUPPORTDESK_LIMIT_IP_TRANSCRIPTS = "2 per hour"
    visitors = (personas.v1, personas.v2, personas.v3)
    for v in visitors:
        sending.post_message(Actor.visitor(v.id), client_msg_id="c", body="Hi")
    same_address = [
        ratelimits.VisitorLimits(visitor_id=v.id, client="203.0.113.9") for v in visitors
    ]
    for v, limits in zip(visitors[:2], same_address[:2], strict=True):
        sessions.prepare_transcript_email(
            visitor_id=v.id, email="x@example.com", before_sending=limits.transcript_email
        )

    with pytest.raises(ratelimits.RateLimited) as refused:
        sessions.prepare_transcript_email(
            visitor_id=personas.v3.id,
            email="x@example.com",
            before_sending=same_address[2].transcript_email,
        )
    assert refused.value.rule == ratelimits.IP_TRANSCRIPTS


# --- sockets -------------------------------------------------------------------


async def test_visitor_asks_for_the_transcript_and_is_told_once_it_is_mailed(personas, sockets):
    conversation = await ws.db(chat_with_a_note, personas)
    visitor, ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    assert ready["visitor"]["email"] is None

    await visitor.send_json_to({"type": "transcript.email", "email": "  dana@example.com "})

    sent = await ws.receive_until(visitor, "transcript.sent")
    assert sent == {
        "type": "transcript.sent",
        "conversation": conversation,
        "email": "dana@example.com",
    }
    [mailed] = mail.outbox
    assert mailed.to == ["dana@example.com"]
    assert "That is by design. Enjoy!" in mailed.body
    # The next hello prefills the form with the address.
    _again, ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    assert ready["visitor"]["email"] == "dana@example.com"


@pytest.mark.parametrize("email", ["", "dana", "dana@", "@example.com", "a b@example.com", 42])
async def test_a_bad_address_gets_bad_email_and_nothing_is_mailed(personas, sockets, email):
    await ws.db(chat_with_a_note, personas)
    visitor, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))

    await visitor.send_json_to({"type": "transcript.email", "email": email})

    assert (await ws.receive_until(visitor, "error"))["code"] == "bad_email"
    assert mail.outbox == []
    assert (await ws.db(Visitor.objects.get, pk=personas.v1.pk)).email == ""


async def test_the_fourth_request_for_one_chat_is_rate_limited(personas, sockets):
    await ws.db(chat_with_a_note, personas)
    visitor, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    for _ in range(3):
        await visitor.send_json_to({"type": "transcript.email", "email": "dana@example.com"})
        await ws.receive_until(visitor, "transcript.sent")

    await visitor.send_json_to({"type": "transcript.email", "email": "dana@example.com"})

    assert (await ws.receive_until(visitor, "error"))["code"] == "rate_limited"
    assert len(mail.outbox) == 3
    await visitor.send_json_to({"type": "ping"})
    await ws.receive_until(visitor, "pong")  # refused, not closed


async def test_no_chat_yet_means_not_found(personas, sockets):
    visitor, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))
    await visitor.send_json_to({"type": "transcript.email", "email": "dana@example.com"})
    assert (await ws.receive_until(visitor, "error"))["code"] == "not_found"
    assert mail.outbox == []


async def test_a_mail_server_failure_is_answered_with_unavailable(personas, sockets, monkeypatch):
    def refuse(self, messages):
        raise smtplib.SMTPServerDisconnected("gone")

    monkeypatch.setattr(EmailBackend, "send_messages", refuse)
    await ws.db(chat_with_a_note, personas)
    visitor, _ready = await sockets.visitor(personas.acme.key, personas.token(personas.v1))

    await visitor.send_json_to({"type": "transcript.email", "email": "dana@example.com"})

    assert (await ws.receive_until(visitor, "error"))["code"] == "unavailable"
