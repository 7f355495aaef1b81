"""The knowledge-base bot in a real browser, on a real daphne worker: the widget shows
the bot's answer with its link and 👍/👎, and "Talk to a person" brings an agent who sees
the whole exchange."""

import pytest
from playwright.sync_api import expect

from devstack.waiting import wait_until
from tests.browser import LiveApp, screenshot_path
from tests.test_e2e_browser_dashboard import chat_item, open_chat, signed_in_and_available

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser

SHIPPING = """# Shipping times and costs
URL: https://shop.example/help/shipping

Standard delivery takes 3 to 5 business days and costs $4.95. It is free on orders
over $75.

Express delivery arrives the next business day when you order before 2 pm.
"""
GIFT_CARDS = """# Gift cards

Gift cards never expire. Check the balance on the gift card page.
"""


def open_widget(page, app: LiveApp):
    page.goto(app.shop_url)
    page.get_by_role("button", name="Open chat").click()
    frame = page.frame_locator("#supportdesk-frame")
    expect(frame.get_by_role("log", name="Conversation")).to_be_visible()
    return frame


def test_the_bot_answers_in_the_widget_and_talk_to_a_person_brings_alice_screenshots(
    new_context, live_app, tmp_path
):
    # (`make screenshots` writes widget-bot.png and dashboard-bot.png to docs/screenshots/.)
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "shipping.md").write_text(SHIPPING)
    (folder / "gift-cards.md").write_text(GIFT_CARDS)
    assert live_app.manage("import_kb", "--site", live_app.site_key, str(folder)).split()[-1] == "2"
    dashboard = new_context().new_page()
    signed_in_and_available(dashboard, live_app)
    page = new_context().new_page()
    frame = open_widget(page, live_app)

    composer = frame.get_by_role("textbox", name="Write a message")
    composer.fill("how long does standard delivery take?")
    composer.press("Enter")

    answer = frame.locator(".sd-them:not(.sd-greeting)").last
    expect(answer.locator(".sd-bubble")).to_contain_text("3 to 5 business days")
    expect(answer.locator(".sd-by")).to_have_text("Assistant")
    expect(answer.get_by_role("link")).to_have_attribute(
        "href", "https://shop.example/help/shipping"
    )
    expect(frame.locator("#sd-status")).to_have_text("Our assistant answers first")
    page.screenshot(path=screenshot_path("widget-bot.png", tmp_path))

    helpful = answer.get_by_role("button", name="Yes, this helped")
    helpful.click()
    expect(helpful).to_have_attribute("aria-pressed", "true")
    # Nothing on the page announces the store: look in the database.
    wait_until(
        lambda: live_app.query("SELECT helpful FROM kb_botanswer") == [(1,)],
        timeout=10,
        what="the thumbs-up stored",
    )

    # Nobody was routed the chat while the bot had it.
    expect(dashboard.locator("#chat-list li")).to_have_count(0)

    frame.get_by_role("button", name="Talk to a person").click()

    expect(frame.locator("#sd-title")).to_have_text("alice")
    expect(frame.get_by_role("button", name="Talk to a person")).to_be_hidden()
    (conversation,) = live_app.query("SELECT id FROM chat_conversation")[0]
    expect(chat_item(dashboard, conversation)).to_be_visible()
    pane = open_chat(dashboard, conversation)
    # The whole exchange, the bot's answer marked as the bot's, with its article.
    expect(pane.locator(".msg-visitor .bubble")).to_have_text(
        "how long does standard delivery take?"
    )
    bot_answer = pane.locator(".msg-bot")
    expect(bot_answer.locator(".bubble")).to_contain_text("3 to 5 business days")
    expect(bot_answer.locator(".by-bot")).to_have_text("Bot, from “Shipping times and costs” · ")
    dashboard.screenshot(path=screenshot_path("dashboard-bot.png", tmp_path))
