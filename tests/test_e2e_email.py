"""The email channel with real processes on loopback: smtplib hands mail to a real
`receive_mail`, the agent answers on a real daphne worker's socket, the worker mails the
reply to a local aiosmtpd sink with the threading headers, and the visitor's answer to
it continues the same conversation. Also: an auto-reply opens nothing, a receiver
restarted between two mails loses neither, the receiver's refusals (unknown address,
oversize), and a provider's inbound webhook (Mailgun, through django-anymail) posted
over HTTP to a live worker."""

import asyncio
import hashlib
import hmac
import itertools
import smtplib
import time
from email.message import EmailMessage
from urllib.parse import urlencode

import pytest

from devstack import Peer, Server, connect_agent, create_agent, login, manage, request, set_presence
from devstack.mail import MailReceiver, MailSink

pytest_plugins = ["tests.e2e"]
pytestmark = pytest.mark.e2e

INBOUND = "support@acme.test"
MAILGUN_KEY = "key-e2e-mailgun-signing"
MAIL_TIMEOUT = 20.0
MAX_BYTES = 200_000
_ids = itertools.count(1)


@pytest.fixture
def sink():
    server = MailSink()
    yield server
    server.stop()


@pytest.fixture
def e2e_overrides(sink: MailSink) -> dict[str, str]:
    return {
        # The workers mail replies through SMTP to the sink.
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(sink.port),
        "SUPPORTDESK_MAIL_INTERVAL": "0.5",
        "SUPPORTDESK_MAIL_MAX_BYTES": str(MAX_BYTES),
        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
    }


@pytest.fixture
def mail_site(e2e_env: dict) -> str:
    """A site with the email channel, made by `create_site --inbound-email`."""
    out = manage(
        e2e_env,
        "create_site",
        "--name",
        "Acme Mail",
        "--origin",
        "http://mail.acme.test",
        "--inbound-email",
        INBOUND,
    )
    return out.strip().splitlines()[-1]


@pytest.fixture
def receiver(e2e_env: dict, mail_site: str, tmp_path, request):
    server = MailReceiver(e2e_env, tmp_path / "receive_mail.log").start()
    failed_before = request.session.testsfailed
    yield server
    server.stop()
    if request.session.testsfailed > failed_before:
        print(f"\n----- receive_mail log tail -----\n{server.log.read_text()[-3000:]}")


async def available_agent(env: dict, worker: Server) -> Peer:
    password = await asyncio.to_thread(create_agent, env, "alice", capacity=5)
    agent, _ready = await connect_agent(worker, await login(worker, "alice", password), "alice")
    await set_presence(agent)
    return agent


def visitor_mail(body: str, *, sender="Ann <ann@example.com>", to=INBOUND, **headers):
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = headers.pop("Subject", "Order 1234")
    message["Message-ID"] = headers.pop("Message_ID", f"<v{next(_ids)}@example.com>")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


async def assigned(agent: Peer) -> dict:
    frame = await agent.recv_until("conversation.assigned", MAIL_TIMEOUT)
    return frame["conversation"]


async def test_mail_in_answer_out_threaded_and_the_answer_continues_the_conversation(
    spawn_workers, e2e_env, receiver: MailReceiver, sink: MailSink
):
    [worker] = spawn_workers(1)
    agent = await available_agent(e2e_env, worker)

    first = visitor_mail("Where is my order?", Message_ID="<first@example.com>")
    await asyncio.to_thread(receiver.send, first, sender="ann@example.com")

    conversation = await assigned(agent)
    assert conversation["channel"] == "email"
    assert conversation["email"] == {
        "subject": "Order 1234",
        "sender": "Ann <ann@example.com>",
        "sender_verified": False,
    }
    assert [m["body"] for m in conversation["messages"]] == ["Where is my order?"]
    conversation_id = conversation["id"]

    mark = agent.mark()
    await agent.send(
        {
            "type": "note.send",
            "conversation": conversation_id,
            "client_msg_id": "n1",
            "body": "internal: check the warehouse",
        }
    )
    await agent.send(
        {
            "type": "message.send",
            "conversation": conversation_id,
            "client_msg_id": "a1",
            "body": "It left the warehouse today.",
        }
    )
    await agent.recv_until("message.ack", since=mark, client_msg_id="a1")

    [reply] = await asyncio.to_thread(sink.wait_for, 1, MAIL_TIMEOUT)
    _mail_from, rcpt_tos, _ = sink.received[0]
    assert rcpt_tos == ["ann@example.com"]
    assert reply["From"] == f"Acme Mail <{INBOUND}>"
    assert reply["To"] == "ann@example.com"
    # Signed with the workers' SECRET_KEY: its form here, its signature by the answer below.
    assert reply["Reply-To"].startswith(f"support+c{conversation_id}-")
    assert reply["Reply-To"].endswith("@acme.test")
    assert reply["Subject"] == "Re: Order 1234"
    assert reply["In-Reply-To"] == "<first@example.com>"
    assert reply["References"] == "<first@example.com>"
    ours = reply["Message-ID"]
    assert ours.startswith(f"<c{conversation_id}.") and ours.endswith("@acme.test>")
    plain = reply.get_body(("plain",)).get_content()
    html = reply.get_body(("html",)).get_content()
    assert "It left the warehouse today." in plain and "It left the warehouse today." in html
    assert "warehouse today" in plain and "check the warehouse" not in plain + html

    # The visitor's client answers: to the Reply-To address, quoting our Message-ID.
    mark = agent.mark()
    answer = visitor_mail(
        "Great, thank you!\n\nOn Mon, Acme Mail wrote:\n> It left the warehouse today.\n",
        to=reply["Reply-To"],
        Subject="Re: Order 1234",
        In_Reply_To=ours,
        References=f"<first@example.com> {ours}",
    )
    await asyncio.to_thread(receiver.send, answer, sender="ann@example.com")
    message = await agent.recv_until("message", MAIL_TIMEOUT, since=mark)
    assert (message["conversation"], message["seq"]) == (conversation_id, 3)
    assert message["body"] == "Great, thank you!"
    # Nothing more was mailed: a visitor's message gets no automatic answer.
    await agent.round_trip()
    assert len(sink.received) == 1


async def test_an_auto_reply_opens_nothing_and_gets_no_answer(
    spawn_workers, e2e_env, e2e_database, receiver: MailReceiver, sink: MailSink
):
    [worker] = spawn_workers(1)
    agent = await available_agent(e2e_env, worker)

    out_of_office = visitor_mail(
        "I am out of the office until Monday.",
        Auto_Submitted="auto-replied",
        Subject="Out of office",
    )
    await asyncio.to_thread(receiver.send, out_of_office, sender="ann@example.com")
    bounce = visitor_mail("Delivery failed", sender="MAILER-DAEMON@mx.example.com")
    await asyncio.to_thread(receiver.send, bounce, sender="")
    # A person's mail after them: the first conversation the agent gets is this one.
    await asyncio.to_thread(
        receiver.send, visitor_mail("A real question"), sender="ann@example.com"
    )

    conversation = await assigned(agent)
    assert [m["body"] for m in conversation["messages"]] == ["A real question"]
    rows = e2e_database.query("SELECT count(*) FROM chat_conversation WHERE channel = 'email'")
    assert rows == [(1,)]
    assert sink.received == []


async def test_a_receiver_restarted_between_two_mails_loses_neither(
    spawn_workers, e2e_env, e2e_database, receiver: MailReceiver
):
    [worker] = spawn_workers(1)
    agent = await available_agent(e2e_env, worker)

    await asyncio.to_thread(
        receiver.send, visitor_mail("First, before the restart"), sender="a@x.test"
    )
    await asyncio.to_thread(receiver.stop)
    await asyncio.to_thread(receiver.start)
    second = visitor_mail("Second, after it", sender="b@y.test")
    await asyncio.to_thread(receiver.send, second, sender="b@y.test")

    await agent.wait_for(
        lambda frames: len([f for f in frames if f["type"] == "conversation.assigned"]) == 2,
        "two conversations assigned",
        MAIL_TIMEOUT,
    )
    bodies = {
        f["conversation"]["messages"][0]["body"] for f in agent.of_type("conversation.assigned")
    }
    assert bodies == {"First, before the restart", "Second, after it"}
    assert e2e_database.query("SELECT count(*) FROM chat_message") == [(2,)]


async def test_the_receiver_refuses_unknown_addresses_and_oversized_mail_clearly(
    e2e_database, receiver: MailReceiver
):
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await asyncio.to_thread(receiver.send, visitor_mail("hi", to="nobody@acme.test"))
    [(code, text)] = refused.value.recipients.values()
    assert (code, text) == (550, b"5.1.1 No such mailbox here")

    with smtplib.SMTP("127.0.0.1", receiver.port) as client:
        client.ehlo("mta.test")
        assert client.has_extn("size") and int(client.esmtp_features["size"]) == MAX_BYTES
    big = visitor_mail("x" * (MAX_BYTES + 1000))
    with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as too_big:
        await asyncio.to_thread(receiver.send, big)
    assert too_big.value.smtp_code == 552
    assert e2e_database.query("SELECT count(*) FROM chat_message") == [(0,)]


def mailgun_form(message: EmailMessage, *, recipient: str, key: str = MAILGUN_KEY) -> bytes:
    """Mailgun's forward() of a raw-MIME route: the mail and its signature fields."""
    timestamp, token = str(int(time.time())), hashlib.sha256(str(time.time()).encode()).hexdigest()
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    fields = {
        "body-mime": message.as_string(),
        "recipient": recipient,
        "sender": "carl@example.com",
        "timestamp": timestamp,
        "token": token,
        "signature": signature,
    }
    return urlencode(fields).encode()


async def test_a_mailgun_inbound_webhook_opens_an_email_conversation(
    spawn_workers, e2e_env, mail_site, e2e_database
):
    [worker] = spawn_workers(1)
    agent = await available_agent(e2e_env, worker)
    mail = visitor_mail("Sent through Mailgun", sender="Carl <carl@example.com>", Subject="Hello")
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    forged = await request(
        worker.port,
        "POST",
        "/anymail/mailgun/inbound/",
        headers=form,
        body=mailgun_form(mail, recipient=INBOUND, key="not-the-key"),
    )
    assert forged.status == 400
    answered = await request(
        worker.port,
        "POST",
        "/anymail/mailgun/inbound/",
        headers=form,
        body=mailgun_form(mail, recipient=INBOUND),
    )
    assert answered.status == 200

    conversation = await assigned(agent)
    assert conversation["channel"] == "email"
    assert conversation["email"]["subject"] == "Hello"
    assert conversation["email"]["sender"] == "Carl <carl@example.com>"
    assert [m["body"] for m in conversation["messages"]] == ["Sent through Mailgun"]
    assert e2e_database.query("SELECT count(*) FROM chat_message") == [(1,)]
