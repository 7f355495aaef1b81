"""An email conversation on the agent dashboard (Debian's Chromium, a real daphne, a
real `receive_mail`): in one list with the chats, with its channel icon, subject and
sender marked unverified, a composer that says the reply goes by email, and the reply
caught by a local SMTP sink."""

import smtplib
from email.message import EmailMessage

import pytest
from playwright.sync_api import expect

from devstack import RedisServer, redis_installed
from devstack.mail import MailReceiver, MailSink
from tests.browser import LiveApp, screenshot_path
from tests.test_e2e_browser_dashboard import (
    chat_item,
    open_chat,
    reply,
    signed_in_and_available,
    visitor,
)

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser

INBOUND = "help@kettle.test"


@pytest.fixture
def sink():
    server = MailSink()
    yield server
    server.stop()


@pytest.fixture
def mail_app(live_app: LiveApp, sink: MailSink, tmp_path):
    """The live app with the email channel: the site's inbound address, replies mailed
    to the sink, and `receive_mail` running. With Redis: the receiver is a process of
    its own, and the agent hears of the mail it routed through the channel layer."""
    if not redis_installed():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    redis = RedisServer.start_new(tmp_path)
    live_app.stop()
    live_app.query("UPDATE chat_site SET inbound_email = %s", (INBOUND,))
    live_app.env.update(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(sink.port),
        SUPPORTDESK_MAIL_INTERVAL="0.5",
        REDIS_URL=redis.url,
    )
    live_app.start()
    receiver = MailReceiver(live_app.env, tmp_path / "receive_mail.log").start()
    yield live_app, receiver
    receiver.stop()
    live_app.stop()
    redis.stop()


# "screenshot" in its name: `make screenshots` also takes docs/screenshots/dashboard-email.png.
def test_an_email_sits_in_the_list_with_the_chats_and_the_reply_goes_by_email_screenshot(
    new_context, mail_app, sink: MailSink, tmp_path
):
    app, receiver = mail_app
    page = new_context().new_page()
    signed_in_and_available(page, app)

    shopper = visitor(app)
    chat = shopper.say("Hello from the widget")["conversation"]
    mail = EmailMessage()
    mail["From"] = "Ann Example <ann@example.com>"
    mail["To"] = INBOUND
    mail["Subject"] = "Kettle lid is loose"
    mail["Message-ID"] = "<lid@example.com>"
    mail.set_content("The lid of my kettle is loose. Can you help?")
    with smtplib.SMTP("127.0.0.1", receiver.port) as client:
        client.send_message(mail)

    # Both in one list, each with its channel's icon.
    expect(chat_item(page, chat).get_by_role("img", name="Chat")).to_be_visible()
    email_item = page.locator('#chat-list li[data-channel="email"]')
    expect(email_item.get_by_role("img", name="Email")).to_be_visible()
    conversation = int(email_item.get_attribute("data-conversation"))

    pane = open_chat(page, conversation)
    expect(pane.locator(".pane-email")).to_contain_text("Kettle lid is loose")
    expect(pane.locator(".pane-email")).to_contain_text("from Ann Example <ann@example.com>")
    expect(pane.locator(".email-unverified")).to_have_text("unverified")
    expect(pane.locator(".composer-hint")).to_contain_text("The reply is sent by email")
    expect(pane.get_by_role("textbox")).to_have_attribute(
        "placeholder", "Write a reply: it is sent by email…"
    )
    page.screenshot(path=screenshot_path("dashboard-email.png", tmp_path))
    chat_pane = open_chat(page, chat)
    expect(chat_pane.locator(".pane-email")).to_be_hidden()
    expect(chat_pane.locator(".composer-channel")).to_be_hidden()

    pane = open_chat(page, conversation)
    reply(pane, "Send us a photo and we will ship a new lid.")
    [sent] = sink.wait_for(1, 20)
    assert sent["To"] == "ann@example.com"
    assert sent["In-Reply-To"] == "<lid@example.com>"
    assert "we will ship a new lid" in sent.get_body(("plain",)).get_content()
