"""Agent assist in the real dashboard (Debian's Chromium, real daphne): a visitor's
message brings suggested replies above alice's composer, Alt+1 inserts the first, the
chat shows the visitor's language, and an upset visitor's chat is marked and listed
first. The visitor's side never shows any of it.

Every wait is Playwright's auto-waiting `expect` or a frame arriving on a socket.
"""

import pytest
from playwright.sync_api import expect

from tests.browser import VisitorSocket, screenshot_path
from tests.test_e2e_browser_canned import add_shared_canned_response, serious_violations
from tests.test_e2e_browser_dashboard import chat_item, open_chat, signed_in_and_available

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser

REFUND = "Refunds reach your card within 5 working days of the parcel reaching us."


def test_suggestions_appear_for_the_visitors_message_and_alt_1_inserts_one(
    new_context, live_app, tmp_path
):
    add_shared_canned_response(live_app, "refund", REFUND)
    page = new_context().new_page()
    signed_in_and_available(page, live_app)

    calm = VisitorSocket(live_app, origin=live_app.shop_origin)
    calm_chat = calm.say("Hallo, ich möchte wissen, wann mein Paket ankommt.")["conversation"]
    angry = VisitorSocket(live_app, origin=live_app.shop_origin)
    angry_chat = angry.say("This is ridiculous, I am furious with your shop!")["conversation"]
    angry.say("Where is my refund?")

    # The upset visitor's chat is marked and moves above the calm one.
    angry_item = chat_item(page, angry_chat)
    expect(angry_item.get_by_text("Upset visitor")).to_be_attached()
    expect(page.locator(".chat-list li").first).to_have_attribute(
        "data-conversation", str(angry_chat)
    )
    expect(chat_item(page, calm_chat).locator(".item-mood")).to_be_hidden()

    pane = open_chat(page, angry_chat)
    suggestions = pane.get_by_role("group", name="Suggested replies")
    expect(suggestions.get_by_role("button")).to_have_count(1)
    expect(suggestions.get_by_role("button").first).to_contain_text(REFUND)
    language = pane.locator("abbr.assist-language")
    expect(language).to_have_text("EN")
    expect(language).to_have_attribute("title", "Visitor's language: English")

    composer = pane.get_by_role("textbox")
    composer.press_sequentially("Hello! ")
    composer.press("Alt+1")
    expect(composer).to_have_value("Hello! " + REFUND)
    assert serious_violations(page) == []
    page.screenshot(path=screenshot_path("dashboard-assist.png", tmp_path))
    composer.press("Enter")
    assert angry.expect("message", sender="agent")["body"] == "Hello! " + REFUND

    german = open_chat(page, calm_chat).locator("abbr.assist-language")
    expect(german).to_have_text("DE")
    expect(german).to_have_attribute("title", "Visitor's language: German")
    # No refund snippet for a question about a parcel's arrival: nothing is suggested.
    expect(
        page.locator(f'section.pane[data-conversation="{calm_chat}"] .assist-suggestions')
    ).to_be_hidden()
