"""The email channel's rules against the database: what an inbound mail opens or
continues, what it never does, and how agents' replies become mails (inbox/)."""

import asyncio
from email.message import EmailMessage

import pytest
from django.core import mail as django_mail

from chat import reply_address
from chat.conversations import closing, sending, sessions
from chat.conversations.actors import Actor
from chat.models import Attachment, Conversation, Message, SenderKind, Site, Visitor
from inbox import outbound, parsing, receiving
from inbox.models import EmailContact, EmailThread, OutboundMail

pytestmark = pytest.mark.django_db(transaction=True)
INBOUND = "support@acme.example"


@pytest.fixture
def acme(personas):
    personas.acme.inbound_email = INBOUND
    personas.acme.save()
    return personas


def inbound(body="Where is my order?", *, sender="Ann <ann@example.com>", to=INBOUND, **headers):
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = headers.pop("Subject", "Order 1234")
    message["Message-ID"] = headers.pop("Message_ID", "<first@example.com>")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def deliver(message: EmailMessage, *, envelope_sender="ann@example.com", to=INBOUND):
    parsed = parsing.parse_bytes(bytes(message), envelope_sender=envelope_sender)
    return receiving.receive(parsed, recipients=[to])


def reply_as(agent, conversation_id: int, body: str, client_msg_id: str = "r1"):
    return sending.post_message(
        Actor.agent(agent.pk),
        conversation_id=conversation_id,
        client_msg_id=client_msg_id,
        body=body,
    )


def send_turn() -> int:
    return asyncio.run(outbound.run_once())


def test_a_mail_to_the_inbound_address_opens_an_email_conversation_routed_like_a_chat(acme):
    [delivered] = deliver(inbound())
    conversation = Conversation.objects.select_related("visitor").get(pk=delivered.conversation_id)
    assert conversation.channel == "email"
    assert conversation.subject == "Order 1234"
    assert conversation.sender_address == "Ann <ann@example.com>"
    assert conversation.sender_verified is False
    # Routed at once: alice (capacity 2, available) is the least loaded.
    assert conversation.status == "active" and conversation.agent_id in (acme.alice.pk, acme.bob.pk)
    assert conversation.visitor.email == "ann@example.com"
    assert conversation.visitor.name == "Ann"
    [message] = Message.objects.filter(conversation=conversation)
    assert (message.sender, message.body) == (SenderKind.VISITOR, "Where is my order?")


def test_the_agents_reply_is_mailed_threaded_from_the_site_and_never_twice(acme):
    [delivered] = deliver(inbound())
    conversation = Conversation.objects.get(pk=delivered.conversation_id)
    agent = conversation.agent
    reply_as(agent, conversation.pk, "It ships today.")
    sending.post_note(
        agent_id=agent.pk, conversation_id=conversation.pk, client_msg_id="n1", body="SECRET NOTE"
    )
    assert send_turn() == 1
    assert send_turn() == 0  # a second turn finds nothing more to mail
    [sent] = django_mail.outbox
    assert sent.to == ["ann@example.com"]
    assert sent.from_email == f"acme <{INBOUND}>"
    assert sent.reply_to == [reply_address.reply_address(INBOUND, conversation.pk)]
    assert sent.subject == "Re: Order 1234"
    assert sent.extra_headers["In-Reply-To"] == "<first@example.com>"
    assert sent.extra_headers["References"] == "<first@example.com>"
    assert reply_address.conversation_from_message_ids([sent.extra_headers["Message-ID"]]) == (
        conversation.pk
    )
    assert "It ships today." in sent.body
    html = sent.alternatives[0][0]
    assert "It ships today." in html
    assert "SECRET NOTE" not in sent.body + html  # internal notes never leave
    assert OutboundMail.objects.get().status == "sent"


def test_a_reply_by_message_id_continues_the_conversation_and_threads_on(acme):
    [first] = deliver(inbound())
    conversation = Conversation.objects.get(pk=first.conversation_id)
    reply_as(conversation.agent, conversation.pk, "Which colour?")
    send_turn()
    ours = django_mail.outbox[0].extra_headers["Message-ID"]
    # The visitor's client answers to the site's address, quoting our Message-ID.
    [second] = deliver(
        inbound(
            "Blue, please.\n\nOn Mon, Acme wrote:\n> Which colour?\n",
            Subject="Re: Order 1234",
            Message_ID="<second@example.com>",
            In_Reply_To=ours,
            References=f"<first@example.com> {ours}",
        )
    )
    assert second.conversation_id == conversation.pk
    assert Message.objects.filter(conversation=conversation).last().body == "Blue, please."
    reply_as(conversation.agent, conversation.pk, "Done.", client_msg_id="r2")
    send_turn()
    latest = django_mail.outbox[-1]
    assert latest.extra_headers["In-Reply-To"] == "<second@example.com>"
    assert latest.extra_headers["References"].split() == [
        "<first@example.com>",
        ours,
        "<second@example.com>",
    ]


def test_the_reply_address_continues_a_conversation_when_headers_were_lost(acme):
    [first] = deliver(inbound())
    token_address = reply_address.reply_address(INBOUND, first.conversation_id)
    # Another address of the visitor's, no threading headers: the token decides.
    [second] = deliver(
        inbound("Me again", sender="ann@work.example", Message_ID="<m2@work.example>"),
        envelope_sender="ann@work.example",
        to=token_address,
    )
    assert second.conversation_id == first.conversation_id
    conversation = Conversation.objects.get(pk=first.conversation_id)
    assert conversation.sender_address == "ann@work.example"  # the agent sees who wrote


def test_a_forged_token_or_message_id_opens_a_conversation_of_its_own(acme):
    [first] = deliver(inbound())
    forged = reply_address.reply_address(INBOUND, first.conversation_id).replace("-", "-0", 1)
    [second] = deliver(
        inbound(
            "Let me in",
            sender="mallory@evil.example",
            Message_ID="<x@evil.example>",
            In_Reply_To=f"<c{first.conversation_id}.abc.0123456789abcdef@acme.example>",
        ),
        envelope_sender="mallory@evil.example",
        to=forged,
    )
    assert second.conversation_id != first.conversation_id


def test_the_same_mail_delivered_twice_is_stored_once(acme):
    [first] = deliver(inbound())
    [again] = deliver(inbound())
    assert first.created is True
    assert again.conversation_id == first.conversation_id and again.created is False
    assert Message.objects.filter(conversation_id=first.conversation_id).count() == 1


def test_auto_replies_and_bounces_open_nothing_and_get_no_answer(acme):
    for message, envelope_sender in (
        (inbound("I am out of office", Auto_Submitted="auto-replied"), "ann@example.com"),
        (inbound("Delivery failed", sender="MAILER-DAEMON@mx.example.com"), ""),
        (inbound("Newsletter", Precedence="bulk", Message_ID="<n@x>"), "news@example.com"),
    ):
        [delivered] = deliver(message, envelope_sender=envelope_sender)
        assert delivered.conversation_id is None and delivered.dropped
    assert not Conversation.objects.filter(channel="email").exists()
    assert send_turn() == 0 and django_mail.outbox == []


def test_a_sender_over_its_limit_is_told_to_try_later(acme, settings):
    settings.SUPPORTDESK_LIMIT_MAIL_SENDER = "2 per hour"
    deliver(inbound(Message_ID="<1@x>"))
    deliver(inbound(Message_ID="<2@x>"))
    with pytest.raises(receiving.TryLater):
        deliver(inbound(Message_ID="<3@x>"))
    # Another sender is not held back by ann's limit.
    deliver(inbound(sender="bo@example.com", Message_ID="<4@x>"), envelope_sender="bo@example.com")
    assert Message.objects.count() == 3


def test_a_site_over_its_limit_is_told_to_try_later(acme, settings):
    settings.SUPPORTDESK_LIMIT_MAIL_SITE = "1 per hour"
    deliver(inbound(Message_ID="<1@x>"))
    with pytest.raises(receiving.TryLater):
        deliver(inbound(sender="bo@example.com", Message_ID="<2@x>"), envelope_sender="bo@x")


def test_attachments_pass_the_chat_checks_and_refused_ones_are_named(acme):
    message = inbound("Photo and a program")
    message.add_attachment(b"plain words\n", maintype="text", subtype="plain", filename="notes.txt")
    message.add_attachment(
        b"MZ\x90\x00binary", maintype="application", subtype="octet-stream", filename="setup.exe"
    )
    [delivered] = deliver(message)
    rows = list(Message.objects.filter(conversation_id=delivered.conversation_id).order_by("seq"))
    assert "[Not attached: setup.exe (This kind of file cannot be attached.)]" in rows[0].body
    assert rows[1].body == "notes.txt"
    attachment = Attachment.objects.get(message=rows[1])
    assert attachment.content_type == "text/plain"
    assert attachment.uploaded_by == SenderKind.VISITOR


def test_mail_to_an_address_of_no_site_is_not_stored(acme):
    assert deliver(inbound(to="sales@other.example"), to="sales@other.example") == []
    assert not Conversation.objects.exists()


def test_one_sender_is_one_visitor_across_mails(acme):
    [first] = deliver(inbound())
    Conversation.objects.filter(pk=first.conversation_id).update(status="closed", agent=None)
    [second] = deliver(inbound("New question", Message_ID="<new@example.com>", Subject="Returns"))
    assert second.conversation_id != first.conversation_id
    conversations = Conversation.objects.filter(channel="email")
    assert len({c.visitor_id for c in conversations}) == 1
    assert EmailContact.objects.get().address == "ann@example.com"
    assert Conversation.objects.get(pk=second.conversation_id).subject == "Returns"


def test_a_reply_to_a_closed_conversation_opens_the_visitors_next_one(acme):
    [first] = deliver(inbound())
    conversation = Conversation.objects.get(pk=first.conversation_id)
    closing.close_conversation(Actor.agent(conversation.agent_id), conversation_id=conversation.pk)
    [second] = deliver(
        inbound(
            "One more thing",
            Message_ID="<m3@example.com>",
            to=reply_address.reply_address(INBOUND, conversation.pk),
        ),
        to=reply_address.reply_address(INBOUND, conversation.pk),
    )
    reopened = Conversation.objects.get(pk=second.conversation_id)
    assert reopened.pk != conversation.pk and reopened.is_open
    assert reopened.visitor_id == conversation.visitor_id and reopened.channel == "email"


def test_the_idle_sweep_leaves_email_conversations_open(acme, settings):
    settings.SUPPORTDESK_INACTIVITY_TIMEOUT = 0
    [delivered] = deliver(inbound())
    closing.sweep()
    assert Conversation.objects.get(pk=delivered.conversation_id).is_open


def test_a_failed_send_is_retried_and_sent_once(acme, settings, monkeypatch):
    [delivered] = deliver(inbound())
    conversation = Conversation.objects.get(pk=delivered.conversation_id)
    reply_as(conversation.agent, conversation.pk, "Answer")
    calls = []

    def refuse(self, fail_silently=False):
        calls.append(1)
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr("django.core.mail.EmailMessage.send", refuse)
    assert send_turn() == 1
    row = OutboundMail.objects.get()
    assert (row.status, row.attempts) == ("pending", 1) and "smtp down" in row.last_error
    assert send_turn() == 0  # not due yet: the backoff holds it
    monkeypatch.undo()
    OutboundMail.objects.update(next_attempt_at=row.created_at)
    assert send_turn() == 1
    assert len(django_mail.outbox) == 1 and len(calls) == 1
    assert OutboundMail.objects.get().status == "sent"


def test_replies_are_made_once_whoever_collects(acme):
    [delivered] = deliver(inbound())
    conversation = Conversation.objects.get(pk=delivered.conversation_id)
    reply_as(conversation.agent, conversation.pk, "One")
    reply_as(conversation.agent, conversation.pk, "Two", client_msg_id="r2")
    assert outbound.collect() == 1  # both messages in one mail
    assert outbound.collect() == 0
    mail = OutboundMail.objects.get()
    assert "One" in mail.text and "Two" in mail.text
    assert EmailThread.objects.get().mailed_seq == conversation.last_seq + 2


def test_a_chat_is_never_mailed(acme):
    posted = sending.post_message(Actor.visitor(acme.v1.pk), client_msg_id="c1", body="Hi")
    conversation = Conversation.objects.get(pk=posted.message["conversation"])
    assert conversation.channel == "chat"
    reply_as(conversation.agent, conversation.pk, "Hello")
    assert send_turn() == 0 and django_mail.outbox == []


def test_only_an_email_conversations_reply_wakes_the_mail_sender(acme, monkeypatch):
    # Each turn of the sender reads the database twice: woken by every chat reply, it
    # ran back to back under load (docs/performance.md, change 19).
    rung = []

    class Loop:
        def is_closed(self):
            return False

        def call_soon_threadsafe(self, callback):
            callback()

    doorbell = type("Doorbell", (), {"set": lambda self: rung.append(1)})()
    monkeypatch.setattr(outbound, "_doorbells", {Loop(): doorbell})
    posted = sending.post_message(Actor.visitor(acme.v1.pk), client_msg_id="c1", body="Hi")
    chat = Conversation.objects.get(pk=posted.message["conversation"])
    reply_as(chat.agent, chat.pk, "Hello")
    assert rung == []
    [delivered] = deliver(inbound())
    email = Conversation.objects.get(pk=delivered.conversation_id)
    assert rung == []  # the visitor's mail: nothing to send
    reply_as(email.agent, email.pk, "It ships today.")
    assert len(rung) == 1


def test_the_offline_form_opens_an_email_conversation_answered_by_mail(acme):
    acme.alice.status = acme.bob.status = "away"
    for agent in (acme.alice, acme.bob):
        agent.save()
    _visitor, _token, posted = sessions.leave_offline_message(
        site_key=acme.acme.key,
        visitor_token=None,
        name="Ann",
        email="ann@example.com",
        question="Do you ship to Norway?",
    )
    conversation = Conversation.objects.get(pk=posted.message["conversation"])
    assert conversation.channel == "email"
    assert conversation.sender_address == "Ann <ann@example.com>"
    acme.alice.status = "available"
    acme.alice.save()
    from chat.conversations import routing

    routing.assign_queued()
    conversation.refresh_from_db()
    reply_as(conversation.agent, conversation.pk, "Yes we do.")
    send_turn()
    [sent] = django_mail.outbox
    assert sent.to == ["ann@example.com"] and "Yes we do." in sent.body
    # The visitor answers the mail: it lands in the same conversation.
    [answer] = deliver(
        inbound(
            "Great, thanks",
            Message_ID="<a@example.com>",
            In_Reply_To=sent.extra_headers["Message-ID"],
        )
    )
    assert answer.conversation_id == conversation.pk


def test_a_transcript_on_a_site_with_an_inbound_address_threads_back(acme):
    posted = sending.post_message(Actor.visitor(acme.v1.pk), client_msg_id="c1", body="Hi")
    transcript = sessions.prepare_transcript_email(visitor_id=acme.v1.pk, email="v1@example.com")
    conversation_id = posted.message["conversation"]
    assert transcript.message.from_email == INBOUND
    assert transcript.message.reply_to == [reply_address.reply_address(INBOUND, conversation_id)]
    mid = transcript.message.extra_headers["Message-ID"]
    assert reply_address.conversation_from_message_ids([mid]) == conversation_id
    # An answer to it goes to that chat's visitor (its open chat here).
    [answer] = deliver(
        inbound("About that chat", sender="v1@example.com", Message_ID="<t@x>", In_Reply_To=mid),
        envelope_sender="v1@example.com",
    )
    assert answer.conversation_id == conversation_id


def test_the_rest_api_shows_the_channel_subject_and_unverified_sender(acme, client):
    from integrations import keys

    [delivered] = deliver(inbound())
    chat = sending.post_message(Actor.visitor(acme.v1.pk), client_msg_id="c1", body="Hi")
    _row, key = keys.create_api_key(site=acme.acme, name="CRM")
    headers = {"Authorization": f"Bearer {key}"}

    email = client.get(f"/api/v1/conversations/{delivered.conversation_id}", headers=headers)
    other = client.get(f"/api/v1/conversations/{chat.message['conversation']}", headers=headers)

    assert email.json()["channel"] == "email"
    assert email.json()["email"] == {
        "subject": "Order 1234",
        "sender": "Ann <ann@example.com>",
        "sender_verified": False,
    }
    assert (other.json()["channel"], other.json()["email"]) == ("chat", None)


def test_the_admin_lists_outbound_mails_and_sends_one_again(acme, admin_client):
    [delivered] = deliver(inbound())
    conversation = Conversation.objects.get(pk=delivered.conversation_id)
    reply_as(conversation.agent, conversation.pk, "Answer")
    send_turn()
    mail = OutboundMail.objects.get()

    page = admin_client.get("/admin/inbox/outboundmail/")
    assert page.status_code == 200 and b"Re: Order 1234" in page.content
    admin_client.post(
        "/admin/inbox/outboundmail/",
        {"action": "send_again", "_selected_action": [mail.pk]},
    )
    assert send_turn() == 1
    assert len(django_mail.outbox) == 2
    assert {m.extra_headers["Message-ID"] for m in django_mail.outbox} == {mail.message_id}


def test_a_mail_from_our_own_address_is_never_answered(acme):
    [delivered] = deliver(inbound(sender=f"Acme <{INBOUND}>"), envelope_sender=INBOUND)
    assert delivered.conversation_id is None and "own" in delivered.dropped
    assert not Conversation.objects.exists()


def test_characters_no_column_takes_are_dropped_not_refused_on_every_retry(acme):
    raw = (
        b"From: Ann <ann@example.com>\r\nTo: support@acme.example\r\n"
        b"Subject: Bad\x00 subject\r\nMessage-ID: <nul@example.com>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nHello\x00 there\r\n"
    )
    parsed = parsing.parse_bytes(raw, envelope_sender="ann@example.com")
    [delivered] = receiving.receive(parsed, recipients=[INBOUND])
    conversation = Conversation.objects.get(pk=delivered.conversation_id)
    assert conversation.subject == "Bad subject"
    assert Message.objects.get(conversation=conversation).body == "Hello there"


def test_a_sites_inbound_address_is_checked_as_the_admin_saves_it(db):
    from django.core.exceptions import ValidationError

    from chat.models import Site

    Site.objects.create(name="one", inbound_email="help@acme.example")
    site = Site(name="two", inbound_email="HELP@Acme.example")
    with pytest.raises(ValidationError) as taken:
        site.full_clean()
    assert "Another site already receives mail at this address." in str(taken.value)
    with pytest.raises(ValidationError, match="may not hold"):
        Site(name="three", inbound_email="help+x@acme.example").full_clean()
    fine = Site(name="four", inbound_email="Sales@Acme.example")
    fine.full_clean()
    assert fine.inbound_email == "sales@acme.example"


def test_the_reply_mail_speaks_the_customers_widget_language(acme):
    [delivered] = deliver(inbound())
    conversation = Conversation.objects.select_related("visitor").get(pk=delivered.conversation_id)
    Visitor.objects.filter(pk=conversation.visitor_id).update(language="pt")
    reply_as(conversation.agent, conversation.pk, "Enviamos hoje.")
    assert send_turn() == 1
    [sent] = django_mail.outbox
    assert sent.subject == "Re: Order 1234"  # the customer's words, and the mail convention
    assert "Responda a este e-mail para continuar a conversa." in sent.body
    html = sent.alternatives[0][0]
    assert '<html lang="pt" dir="ltr">' in html


def test_what_the_inbox_writes_into_a_mail_is_in_the_sites_language(acme):
    Site.objects.filter(pk=acme.acme.pk).update(widget_language="fr")
    message = inbound(Subject="")
    message.add_attachment(
        b"MZ\x90\x00", maintype="application", subtype="octet-stream", filename="setup.exe"
    )
    [delivered] = deliver(message)
    conversation = Conversation.objects.get(pk=delivered.conversation_id)
    assert conversation.subject == "(sans objet)"
    [row] = Message.objects.filter(conversation=conversation)
    assert "[Non joint : setup.exe (Ce type de fichier ne peut pas être joint.)]" in row.body
