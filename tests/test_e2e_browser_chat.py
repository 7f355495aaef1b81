"""The issue's acceptance story with two real browsers: shoppers in the widget on the shop's
origin, alice in the dashboard on the app's origin, one daphne in between.

Every wait is Playwright's auto-waiting `expect`; nothing sleeps.
"""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser import LiveApp

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser


# --- the visitor's side: the widget on the shop ---------------------------------


def open_widget(page: Page, app: LiveApp):
    """The shop page with the chat opened from its launcher; the chat frame."""
    page.goto(app.shop_url)
    page.get_by_role("button", name="Open chat").click()
    frame = page.frame_locator("#supportdesk-frame")
    expect(frame.get_by_role("log", name="Conversation")).to_be_visible()
    return frame


def write(frame, text: str) -> None:
    # The composer is enabled once the frame's script runs; `fill` waits for that.
    composer = frame.get_by_role("textbox", name="Write a message")
    composer.fill(text)
    composer.press("Enter")


def expect_chatting_with_alice(frame) -> None:
    expect(frame.locator("#sd-title")).to_have_text("alice")


def expect_queue_position(frame, position: int) -> None:
    expect(frame.locator("#sd-status")).to_have_text(
        re.compile(rf"^You are number {position} in line\b")
    )


def conversation_rows(frame):
    return frame.locator(".sd-row:not(.sd-greeting) .sd-bubble")


# --- the agent's side: the dashboard --------------------------------------------


def dashboard_signed_in_and_available(page: Page, app: LiveApp) -> None:
    page.goto(app.url + "/agent/")
    page.get_by_label("Username").fill(app.agent_username)
    page.get_by_label("Password").fill(app.agent_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection-text")).to_have_text("Connected")
    page.get_by_role("button", name="Available").click()
    expect(page.get_by_role("button", name="Available")).to_have_attribute("aria-pressed", "true")


def chat_entry(page: Page, first_message: str):
    """The dashboard's list entry of the chat that `first_message` started."""
    return page.locator(".chat-list > li").filter(has_text=first_message)


def open_chat(page: Page, entry):
    entry.get_by_role("button").click()
    pane = page.locator(
        f'section.pane[data-conversation="{entry.get_attribute("data-conversation")}"]'
    )
    expect(pane).to_be_visible()
    return pane


def visitor_bubbles(pane):
    return pane.locator(".msg-visitor .bubble")


def test_shoppers_and_alice_chat_queue_reload_and_go_offline_without_losing_a_message(
    new_context, live_app
):
    # alice takes one chat at a time, so the second and third shoppers queue.
    live_app.manage(
        "create_agent", "alice", "--password", live_app.agent_password, "--capacity", "1"
    )
    dashboard = new_context().new_page()
    dashboard_signed_in_and_available(dashboard, live_app)

    # 1. A shopper writes; the chat appears on alice's dashboard with a badge.
    ann_page = new_context().new_page()
    ann = open_widget(ann_page, live_app)
    write(ann, "Hi! Is the copper kettle in stock?")
    ann_entry = chat_entry(dashboard, "Hi! Is the copper kettle in stock?")
    expect(ann_entry.locator(".badge")).to_have_text("1 unread")
    expect(dashboard).to_have_title("(1) supportdesk")
    expect_chatting_with_alice(ann)

    # 2. alice opens it: the shopper sees "Seen"; both see the other typing.
    ann_chat = open_chat(dashboard, ann_entry)
    expect(ann.locator(".sd-me .sd-meta")).to_have_text("Seen")
    expect(dashboard).to_have_title("supportdesk")
    ann_chat.get_by_role("textbox").press_sequentially("Yes")
    expect(ann.get_by_text("alice is typing…")).to_be_visible()
    ann.get_by_role("textbox", name="Write a message").press_sequentially("Also")
    # The site's sneak peek is on (the default): alice sees the draft as it is typed.
    expect(ann_chat.locator(".typing")).to_have_text(re.compile(r" is typing: Also$"))
    ann.get_by_role("textbox", name="Write a message").fill("")

    # 3. alice replies; the open widget reads it and alice sees "Seen".
    ann_chat.get_by_role("textbox").fill("Yes, we have 12 left. Shall I reserve one?")
    ann_chat.get_by_role("textbox").press("Enter")
    expect(conversation_rows(ann)).to_have_text(
        [
            "You: Hi! Is the copper kettle in stock?",
            "alice: Yes, we have 12 left. Shall I reserve one?",
        ]
    )
    expect(ann.get_by_text("alice is typing…")).to_be_hidden()
    expect(ann_chat.locator(".msg-agent .receipt")).to_have_text("Seen")

    # 4. Two more shoppers queue behind Ann: alice is at capacity.
    ben_page = new_context().new_page()
    ben = open_widget(ben_page, live_app)
    write(ben, "Hello, do you ship to Norway?")
    expect_queue_position(ben, 1)
    cleo_context = new_context()
    cleo_page = cleo_context.new_page()
    cleo = open_widget(cleo_page, live_app)
    write(cleo, "Can I change my delivery address?")
    expect_queue_position(cleo, 2)
    expect(dashboard.locator("#queue-length")).to_have_text("2")

    # 5. alice closes Ann's chat: Ben gets her, Cleo moves up to #1.
    ann_chat.get_by_role("button", name="Close chat").click()
    expect(ann.get_by_text("alice ended the chat.")).to_be_visible()
    expect_chatting_with_alice(ben)
    expect_queue_position(cleo, 1)
    expect(dashboard.locator("#queue-length")).to_have_text("1")
    ben_entry = chat_entry(dashboard, "Hello, do you ship to Norway?")
    expect(ben_entry.locator(".badge")).to_have_text("1 unread")

    # 6. alice answers Ben, who reloads mid-chat and sees the whole history once.
    ben_chat = open_chat(dashboard, ben_entry)
    ben_chat.get_by_role("textbox").fill("We do, in 3-5 working days.")
    ben_chat.get_by_role("textbox").press("Enter")
    expected_history = [
        "You: Hello, do you ship to Norway?",
        "alice: We do, in 3-5 working days.",
    ]
    expect(conversation_rows(ben)).to_have_text(expected_history)
    ben_page.reload()
    ben = ben_page.frame_locator("#supportdesk-frame")
    expect_chatting_with_alice(ben)
    expect(conversation_rows(ben)).to_have_text(expected_history)

    # 7. Cleo's turn after Ben's chat ends; then her network drops while she writes.
    ben_chat.get_by_role("button", name="Close chat").click()
    expect_chatting_with_alice(cleo)
    expect(dashboard.locator("#queue-length")).to_have_text("0")
    cleo_chat = open_chat(dashboard, chat_entry(dashboard, "Can I change my delivery address?"))
    expect(cleo.locator(".sd-me .sd-meta")).to_have_text("Seen")

    cleo_context.set_offline(True)
    expect(cleo.get_by_text("You are offline.", exact=False)).to_be_visible()
    write(cleo, "New address: 4 Harbour Lane")
    expect(cleo.locator(".sd-me").last.locator(".sd-meta")).to_have_text("Waiting for connection…")
    cleo_context.set_offline(False)

    expect(visitor_bubbles(cleo_chat)).to_have_text(
        ["Can I change my delivery address?", "New address: 4 Harbour Lane"]
    )
    expect(cleo.locator(".sd-me").last.locator(".sd-meta")).to_have_text("Seen")
    cleo_chat.get_by_role("textbox").fill("Done, it's updated.")
    cleo_chat.get_by_role("textbox").press("Enter")
    expect(conversation_rows(cleo)).to_have_text(
        [
            "You: Can I change my delivery address?",
            "You: New address: 4 Harbour Lane",
            "alice: Done, it's updated.",
        ]
    )
    # Once on both screens and once in the database.
    expect(visitor_bubbles(cleo_chat)).to_have_count(2)
    assert live_app.query(
        "SELECT count(*) FROM chat_message WHERE body = ?", ("New address: 4 Harbour Lane",)
    ) == [(1,)]
