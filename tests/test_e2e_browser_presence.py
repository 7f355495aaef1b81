"""Sneak peek, presence and the queue's estimated wait in real pages (Debian's Chromium,
real daphne): the widget discloses the sneak peek and the dashboard shows the draft; the
widget says "we reply by email" while the only agent is away and "agents online" when she
is back; a queued visitor sees their place in line and about how long it will take.

Every wait is Playwright's auto-waiting `expect` or a frame arriving on a socket.
"""

import pytest
from playwright.sync_api import expect

from tests.browser import AgentSocket, LiveApp, VisitorSocket
from tests.test_e2e_browser_dashboard import chat_pane, signed_in_and_available
from tests.test_e2e_browser_widget import open_widget, write

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser

ONLINE = "Agents online — we typically reply in a few minutes"
BY_EMAIL = "We reply by email"
DISCLOSURE = "Agents can see what you type before you send it."


def shell(app: LiveApp, code: str) -> None:
    app.manage("shell", "-c", code)


def test_the_widget_discloses_sneak_peek_and_the_agent_sees_the_draft_until_it_is_sent(
    new_context, live_app
):
    dashboard = new_context().new_page()
    signed_in_and_available(dashboard, live_app)
    page = new_context().new_page()
    frame = open_widget(page, live_app)
    expect(frame.locator("#sd-privacy")).to_have_text(DISCLOSURE)
    expect(frame.locator("#sd-privacy")).to_be_visible()
    write(frame, "Hi there")
    expect(frame.locator("#sd-title")).to_have_text("alice")
    [(conversation, visitor_id)] = live_app.query("SELECT id, visitor_id FROM chat_conversation")
    pane = chat_pane(dashboard, conversation)
    dashboard.locator(f'#chat-list li[data-conversation="{conversation}"]').get_by_role(
        "button"
    ).click()
    expect(pane).to_be_visible()

    composer = frame.get_by_role("textbox", name="Write a message")
    composer.press_sequentially("Where is my order 1042?", delay=20)

    typing = pane.locator(".typing")
    expect(typing).to_have_text(f"Visitor #{visitor_id} is typing: Where is my order 1042?")
    expect(typing).to_have_class("typing has-draft")
    expect(typing.locator(".typing-text")).to_have_css("font-style", "italic")
    # Never stored: the only message is the one that was sent.
    assert live_app.query("SELECT body FROM chat_message") == [("Hi there",)]

    composer.press("Enter")
    expect(typing).to_be_hidden()
    expect(pane.locator(".messages").first).to_contain_text("Where is my order 1042?")


def test_with_sneak_peek_off_the_widget_makes_no_such_claim(new_context, live_app):
    shell(live_app, "from chat.models import Site; Site.objects.update(sneak_peek=False)")
    frame = open_widget(new_context().new_page(), live_app)
    expect(frame.locator("#sd-title")).to_be_visible()
    expect(frame.locator("#sd-privacy")).to_be_hidden()


def test_the_widget_says_we_reply_by_email_while_the_only_agent_is_away_and_not_after(
    new_context, live_app
):
    alice = AgentSocket(live_app)
    alice.presence("available")
    frame = open_widget(new_context().new_page(), live_app)
    status = frame.locator("#sd-status")
    expect(status).to_have_text(ONLINE)
    expect(frame.get_by_text("No one is online right now.")).to_have_count(0)

    # Her dashboard reports her idle for longer than the setting: away, automatically.
    alice.send({"type": "ping", "idle_seconds": 3600})
    alice.expect("presence", status="away", auto=True)
    expect(status).to_have_text(BY_EMAIL)
    expect(frame.get_by_text("No one is online right now.")).to_be_visible()

    # She touches the dashboard again: available, and the widget says so.
    alice.send({"type": "ping", "idle_seconds": 0})
    alice.expect("presence", status="available", auto=True)
    expect(status).to_have_text(ONLINE)
    expect(frame.get_by_text("No one is online right now.")).to_be_hidden()

    # A chosen away too.
    alice.presence("away")
    expect(status).to_have_text(BY_EMAIL)


def test_a_queued_visitor_sees_their_place_in_line_and_about_how_long(new_context, live_app):
    # Yesterday's chats took alice 8 minutes each.
    shell(
        live_app,
        "from datetime import timedelta; from django.utils import timezone;"
        "from chat.models import Conversation, Site, Visitor;"
        "site = Site.objects.get(); now = timezone.now();"
        "[Conversation.objects.create(site=site, visitor=Visitor.objects.create("
        "site=site, token_hash=f'h{n}'), status='closed', assigned_at=now - timedelta("
        "hours=2, minutes=8), closed_at=now - timedelta(hours=2)) for n in range(3)]",
    )
    alice = AgentSocket(live_app)
    alice.presence("available")
    for n in range(2):  # alice's two slots are taken
        VisitorSocket(live_app, origin=live_app.shop_origin).say(f"Hello, I am shopper {n}")
        alice.expect("conversation.assigned")

    frame = open_widget(new_context().new_page(), live_app)
    write(frame, "Is anyone there?")

    # 8 min x position 1 / 2 slots.
    expect(frame.locator("#sd-status")).to_have_text("You are number 1 in line — about 4 min")
