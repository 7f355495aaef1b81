"""Visitor context and the transcript by email, in real pages (Debian's Chromium, real
daphne): the agent's panel shows the shop page the visitor is on (following a
single-page app's navigation), their browser, local time and earlier chat; a visitor
whose chat ended asks for the transcript and gets it by mail.

Every wait is Playwright's auto-waiting `expect` or a frame arriving on a socket.
"""

import pytest
from playwright.sync_api import expect

from tests.test_e2e_browser_dashboard import chat_item, open_chat, signed_in_and_available
from tests.test_e2e_browser_widget import chat_with_alice, open_widget, write

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser

SHOP_TITLE = "Kettle & Crane · Coffee roasters"


@pytest.fixture
def mail_dir(tmp_path, monkeypatch):
    """Mail the app sends lands here, one file per message (set before the app starts)."""
    path = tmp_path / "mail"
    path.mkdir()
    monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    monkeypatch.setenv("EMAIL_FILE_PATH", str(path))
    return path


def newest_chat_id(app) -> int:
    return app.query("SELECT max(id) FROM chat_conversation")[0][0]


def test_the_agent_sees_the_visitors_page_browser_local_time_and_earlier_chat(
    new_context, live_app
):
    dashboard = new_context().new_page()
    signed_in_and_available(dashboard, live_app)
    shopper = new_context(timezone_id="Asia/Tokyo").new_page()
    frame = open_widget(shopper, live_app)

    # A first chat, which the visitor ends, then a second one.
    write(frame, "Which grinder suits a moka pot?")
    first = open_chat(dashboard, listed_chat(dashboard, live_app, count=1))
    expect(first.get_by_text("Which grinder suits a moka pot?")).to_be_visible()
    frame.get_by_role("button", name="End chat").click()
    expect(first.get_by_text("This chat was closed by the visitor.")).to_be_visible()
    frame.get_by_role("button", name="Start a new chat").click()
    write(frame, "Is the Guji still in stock?")
    pane = open_chat(dashboard, listed_chat(dashboard, live_app, count=2))
    expect(pane.get_by_text("Is the Guji still in stock?")).to_be_visible()

    page_link = pane.locator(".visitor-page a")
    expect(page_link).to_have_text(SHOP_TITLE)
    expect(page_link).to_have_attribute("href", live_app.shop_url)
    expect(page_link).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(pane.locator(".visitor-browser")).to_contain_text("Chrome")
    expect(pane.locator(".visitor-browser")).to_contain_text("Linux")
    expect(pane.locator(".visitor-time")).to_contain_text("(Asia/Tokyo)")
    expect(pane.locator(".visitor-previous-count")).to_have_text("1 earlier chat")

    earlier = pane.get_by_role("button", name="Which grinder suits a moka pot?")
    earlier.click()
    history = pane.locator(".visitor-history")
    expect(history).to_be_visible()
    expect(history.locator(".visitor-history-message")).to_have_count(1)
    expect(history).to_contain_text("Visitor")
    expect(history).to_contain_text("Which grinder suits a moka pot?")

    # The shop is a single-page app now: it changes its URL and title without a reload.
    shopper.evaluate(
        "history.pushState({}, '', '/brewing/moka'); document.title = 'Moka pot guide'"
    )
    expect(page_link).to_have_text("Moka pot guide")
    expect(page_link).to_have_attribute("href", live_app.shop_origin + "/brewing/moka")
    assert live_app.query("SELECT page_url, page_title, timezone FROM chat_visitor") == [
        (live_app.shop_origin + "/brewing/moka", "Moka pot guide", "Asia/Tokyo")
    ]


def listed_chat(dashboard, app, *, count: int) -> int:
    """The newest conversation's id, once the dashboard lists `count` chats."""
    expect(dashboard.locator(".chat-list li")).to_have_count(count)
    conversation = newest_chat_id(app)
    expect(chat_item(dashboard, conversation)).to_be_visible()
    return conversation


def test_after_the_chat_the_visitor_gets_the_transcript_by_email_without_the_notes(
    mail_dir, new_context, live_app
):
    page = new_context().new_page()
    frame, alice, conversation = chat_with_alice(page, live_app, "Can I pay by invoice?")
    alice.send(
        {
            "type": "note.send",
            "conversation": conversation,
            "client_msg_id": "note-1",
            "body": "Check credit limit first",
        }
    )
    alice.expect("note.ack", client_msg_id="note-1")
    alice.reply(conversation, "Yes, for orders over 100 euros.")
    alice.send({"type": "conversation.close", "conversation": conversation})

    field = frame.get_by_role("textbox", name="Email me the transcript")
    expect(field).to_be_visible()
    field.fill("not an address")
    frame.get_by_role("button", name="Send transcript").click()
    expect(frame.get_by_text("Please enter your email address.")).to_be_visible()
    field.fill("dana@example")
    frame.get_by_role("button", name="Send transcript").click()
    expect(frame.get_by_text("That does not look like an email address.")).to_be_visible()
    field.fill("dana@example.com")
    frame.get_by_role("button", name="Send transcript").click()

    expect(frame.get_by_text("Transcript sent to dana@example.com.")).to_be_visible()
    [mail_file] = list(mail_dir.iterdir())
    sent = mail_file.read_text()
    assert "To: dana@example.com" in sent
    assert "Can I pay by invoice?" in sent
    assert "Yes, for orders over 100 euros." in sent
    assert "credit limit" not in sent
    assert live_app.query("SELECT email FROM chat_visitor") == [("dana@example.com",)]
