"""Agent and visitor tools in real pages (Debian's Chromium, real daphne): internal
notes, transfer, the visitor's rating, and the offline form.

Every wait is Playwright's auto-waiting `expect` or a frame arriving on a visitor socket.
"""

import pytest
from playwright.sync_api import expect

from tests.browser import AgentSocket, VisitorSocket
from tests.test_e2e_browser_dashboard import open_chat, reply, signed_in_and_available
from tests.test_e2e_browser_widget import chat_with_alice, log_lines, open_widget

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser


def settle(shopper: VisitorSocket) -> None:
    """Everything the server sent this socket before a fresh ping is read now."""
    shopper.send({"type": "ping"})
    shopper.expect("pong")


def test_agent_note_shows_inline_as_a_note_and_never_reaches_the_visitor(new_context, live_app):
    page = new_context().new_page()
    signed_in_and_available(page, live_app)
    shopper = VisitorSocket(live_app, origin=live_app.shop_origin)
    conversation = shopper.say("My order 1042 never arrived")["conversation"]
    pane = open_chat(page, conversation)

    pane.get_by_label("Note").check()
    expect(pane.get_by_role("textbox")).to_have_attribute(
        "placeholder", "Internal note: only agents see it…"
    )
    reply(pane, "Courier confirmed loss, refund approved")

    note = pane.locator(".msg-note")
    expect(note.locator(".bubble")).to_have_text("Courier confirmed loss, refund approved")
    expect(note).to_contain_text("only agents see this")
    assert live_app.query("SELECT body FROM chat_note") == [
        ("Courier confirmed loss, refund approved",)
    ]

    # Back to replying: the reply reaches the visitor, the note never did.
    pane.get_by_label("Note").uncheck()
    reply(pane, "We are refunding you today.")
    answer = shopper.expect("message", sender="agent")
    assert answer["body"] == "We are refunding you today." and answer["seq"] == 2
    settle(shopper)
    assert "refund approved" not in repr(shopper.frames)
    assert shopper.received("note") == []
    # The reply comes after the note in the pane, as it was written (after the line
    # saying alice joined).
    expect(pane.locator(".messages > li")).to_have_count(4)
    expect(pane.locator(".messages > li").nth(1)).to_have_text("alice joined the chat")
    expect(pane.locator(".messages > li").nth(2)).to_have_class("msg msg-note")


def sign_in_as(page, app, username: str, password: str) -> None:
    page.goto(app.url + "/agent/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection-text")).to_have_text("Connected")
    page.get_by_role("button", name="Available").click()
    expect(page.get_by_role("button", name="Available")).to_have_attribute("aria-pressed", "true")


def test_alice_transfers_a_chat_to_bob_who_gets_its_history_and_the_visitor_is_told(
    new_context, live_app
):
    live_app.manage(
        "create_agent",
        "bob",
        "--password",
        "bob-pass-1234",
        "--capacity",
        "1",
        "--display-name",
        "Bob",
    )
    alice_page = new_context().new_page()
    signed_in_and_available(alice_page, live_app)
    bob_page = new_context().new_page()
    sign_in_as(bob_page, live_app, "bob", "bob-pass-1234")
    shopper = VisitorSocket(live_app, origin=live_app.shop_origin)
    conversation = shopper.say("Can I change my delivery address?")["conversation"]
    alice_pane = open_chat(alice_page, conversation)  # least loaded, longest idle: alice

    alice_pane.get_by_role("button", name="Transfer").click()
    select = alice_pane.get_by_label("Transfer to")
    expect(select.locator("option", has_text="Bob (available, 0/1)")).to_be_enabled()
    select.select_option(label="Bob (available, 0/1)")
    alice_pane.get_by_role("button", name="Transfer chat").click()

    expect(alice_pane.get_by_text("This chat was transferred to Bob.")).to_be_visible()
    expect(alice_pane.get_by_role("textbox")).to_be_disabled()
    told = shopper.expect("message", sender="system")
    assert told["body"] == "You are now chatting with Bob."
    assert shopper.expect("conversation.assigned")["agent"] == {"display_name": "Bob"}

    bob_pane = open_chat(bob_page, conversation)
    expect(bob_pane.get_by_text("Can I change my delivery address?")).to_be_visible()
    reply(bob_pane, "Yes, what is the new address?")
    assert shopper.expect("message", sender="agent")["body"] == "Yes, what is the new address?"


def test_visitor_rates_the_chat_after_it_closes_and_alice_sees_the_rating(new_context, live_app):
    page = new_context().new_page()
    frame, alice, conversation = chat_with_alice(page, live_app, "Where is my kettle?")
    alice.send({"type": "conversation.close", "conversation": conversation})
    expect(frame.get_by_text("How was this chat?")).to_be_visible()
    send = frame.get_by_role("button", name="Send rating")
    expect(send).to_be_disabled()

    frame.get_by_role("button", name="4 out of 5").click()
    frame.get_by_label("Comment (optional)").fill("Fast, thank you")
    send.click()

    expect(frame.get_by_text("Thanks for your feedback!")).to_be_visible()
    rated = alice.expect("conversation.rated", conversation=conversation)
    assert (rated["score"], rated["comment"]) == (4, "Fast, thank you")
    assert live_app.query("SELECT score, comment FROM chat_conversationrating") == [
        (4, "Fast, thank you")
    ]
    # After a reload the chat is still rated: no second form.
    page.reload()
    frame = page.frame_locator("#supportdesk-frame")  # still open after the reload
    expect(frame.get_by_text("This chat has ended.")).to_be_visible()
    expect(frame.get_by_text("How was this chat?")).to_have_count(0)


@pytest.fixture
def mail_dir(tmp_path, monkeypatch):
    """Mail the app sends lands here, one file per message (set before the app starts)."""
    path = tmp_path / "mail"
    path.mkdir()
    monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    monkeypatch.setenv("EMAIL_FILE_PATH", str(path))
    return path


def test_with_nobody_online_the_widget_offers_a_form_that_mails_the_agents(
    mail_dir, new_context, live_app
):
    live_app.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model;"
        f"get_user_model().objects.filter(username={live_app.agent_username!r})"
        ".update(email='alice@shop.example')",
    )
    page = new_context().new_page()  # alice is away: nobody is online
    frame = open_widget(page, live_app)
    expect(frame.get_by_text("No one is online right now.")).to_be_visible()

    frame.get_by_role("textbox", name="Your name").fill("Dana")
    frame.get_by_role("textbox", name="Your email").fill("dana@example.com")
    frame.get_by_role("textbox", name="Your question").fill("Do you ship kettles to Norway?")
    frame.get_by_role("button", name="Leave message").click()

    expect(frame.get_by_text("Thanks! We will reply to dana@example.com.")).to_be_visible()
    expect(frame.locator(".sd-me .sd-bubble")).to_have_text(["You: Do you ship kettles to Norway?"])
    assert live_app.query(
        "SELECT c.status, v.name, v.email FROM chat_conversation c"
        " JOIN chat_visitor v ON v.id = c.visitor_id"
    ) == [("queued", "Dana", "dana@example.com")]
    [mail_file] = list(mail_dir.iterdir())
    sent = mail_file.read_text()
    assert "To: alice@shop.example" in sent
    assert "Reply-To: dana@example.com" in sent
    assert "Do you ship kettles to Norway?" in sent


def leave_offline_message(frame, question: str) -> None:
    frame.get_by_role("textbox", name="Your name").fill("Dana")
    frame.get_by_role("textbox", name="Your email").fill("dana@example.com")
    frame.get_by_role("textbox", name="Your question").fill(question)
    frame.get_by_role("button", name="Leave message").click()


def test_with_nobody_online_the_offline_form_is_the_one_place_to_write(
    mail_dir, new_context, live_app
):
    alice = AgentSocket(live_app)  # away: nobody is online
    page = new_context().new_page()
    frame = open_widget(page, live_app)
    composer = frame.get_by_role("textbox", name="Write a message")
    expect(frame.get_by_text("No one is online right now.")).to_be_visible()
    expect(composer).to_be_hidden()
    # Opened from the launcher, the form takes the focus the composer would have.
    expect(frame.get_by_role("textbox", name="Your name")).to_be_focused()
    expect(frame.get_by_role("button", name="Attach a file")).to_be_hidden()

    # alice is back: the chat's composer instead of the form.
    alice.presence("available")
    expect(composer).to_be_visible()
    expect(frame.get_by_text("No one is online right now.")).to_be_hidden()
    alice.presence("away")
    expect(composer).to_be_hidden()

    # Once the question is sent it waits in the queue: more can be added to it there.
    leave_offline_message(frame, "Do you ship kettles to Norway?")
    expect(frame.get_by_text("Thanks! We will reply to dana@example.com.")).to_be_visible()
    expect(composer).to_be_visible()
    expect(frame.locator("#sd-status")).to_have_text("You are number 1 in line")


def test_the_offline_thank_you_stays_under_the_question_when_an_agent_joins_later(
    mail_dir, new_context, live_app
):
    page = new_context().new_page()  # alice is away: nobody is online
    frame = open_widget(page, live_app)
    leave_offline_message(frame, "Do you ship kettles to Norway?")
    thanks = "Thanks! We will reply to dana@example.com."
    expect(frame.get_by_text(thanks)).to_be_visible()

    alice = AgentSocket(live_app)
    alice.presence("available")
    conversation = alice.expect("conversation.assigned")["conversation"]["id"]
    alice.reply(conversation, "Hi Dana, we do: 3-5 days.")
    expect(log_lines(frame)).to_have_text(
        [
            "You: Do you ship kettles to Norway?",
            thanks,
            "alice joined the chat",
            "alice: Hi Dana, we do: 3-5 days.",
        ]
    )
