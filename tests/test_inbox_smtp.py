"""`receive_mail`'s SMTP answers (inbox/smtp.py), from an aiosmtpd server on a thread of
the test, over a real loopback socket: what a sending mail server is told, and that
only a 250 stores anything."""

import smtplib
from email import policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from chat.models import Conversation, Message
from devstack import free_port
from inbox.smtp import MailHandler

pytestmark = pytest.mark.django_db(transaction=True)
INBOUND = "support@acme.example"


@pytest.fixture
def smtp(personas, settings):
    personas.acme.inbound_email = INBOUND
    personas.acme.save()
    settings.SUPPORTDESK_MAIL_MAX_BYTES = 50_000
    port = free_port()
    controller = Controller(MailHandler(), hostname="127.0.0.1", port=port, data_size_limit=50_000)
    controller.start()
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    client.ehlo("mta.test")
    yield client
    client.close()
    controller.stop()


def mail(body="Hello", **headers) -> EmailMessage:
    message = EmailMessage()
    message["From"] = headers.pop("From", "ann@example.com")
    message["To"] = INBOUND
    message["Subject"] = "Question"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def data_reply(client: smtplib.SMTP, message: EmailMessage, sender="ann@example.com"):
    client.mail(sender)
    code, _ = client.rcpt(INBOUND)
    assert code == 250
    return client.data(message.as_bytes(policy=policy.SMTP))  # CRLF, as MTAs send


def test_a_stored_mail_is_answered_250_and_an_auto_reply_250_but_nothing_stored(smtp):
    assert data_reply(smtp, mail(Message_ID="<1@x>")) == (250, b"2.0.0 Accepted")
    code, text = data_reply(smtp, mail(Message_ID="<2@x>", Auto_Submitted="auto-replied"))
    assert (code, text) == (250, b"2.0.0 Accepted (automatic mail: not answered)")
    assert Message.objects.count() == 1


def test_a_mail_without_text_is_refused_550_with_its_reason(smtp):
    code, text = data_reply(smtp, mail("   \n"))
    assert (code, text) == (550, b"5.6.0 The mail has no text.")
    assert not Conversation.objects.exists()


def test_a_sender_over_its_limit_is_told_451_to_try_later(smtp, settings):
    settings.SUPPORTDESK_LIMIT_MAIL_SENDER = "1 per hour"
    assert data_reply(smtp, mail(Message_ID="<1@x>"))[0] == 250
    smtp.rset()
    code, text = data_reply(smtp, mail(Message_ID="<2@x>"))
    assert code == 451 and text.startswith(b"4.7.1 Too much mail from this sender")
    assert Message.objects.count() == 1


def test_too_big_a_mail_is_refused_552_before_anything_is_stored(smtp):
    assert int(smtp.esmtp_features["size"]) == 50_000
    code, _ = smtp.mail("ann@example.com", options=["SIZE=60000"])
    assert code == 552  # said at MAIL FROM, before a byte of it is sent
    smtp.rset()
    code, _ = data_reply(smtp, mail(("x" * 70 + "\n") * 900))  # undeclared, 64 KB
    assert code == 552
    assert not Message.objects.exists()


def test_an_unknown_recipient_is_refused_at_rcpt(smtp):
    smtp.mail("ann@example.com")
    assert smtp.rcpt("sales@acme.example") == (550, b"5.1.1 No such mailbox here")
    assert smtp.rcpt("SUPPORT+c1-0000000000000000@acme.example")[0] == 250
