"""How the agent dashboard lays a chat out (Debian's Chromium, real daphne): chats titled
by the visitor's name or email, long emails whole in a 1,000 px window; the visitor
panel as a right-hand sidebar that folds away and stays folded, with a "Verified" badge
for a user the site's server vouched for; the pane's buttons and the composer's hint.

Every wait is Playwright's auto-waiting `expect` or a frame arriving on a socket.
"""

import pytest
from playwright.sync_api import expect

from tests.browser import LiveApp, VisitorSocket
from tests.test_e2e_browser_dashboard import chat_item, open_chat, signed_in_and_available

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser

LONG_EMAIL = "margaret.hamilton-apollo-guidance@software-engineering.example.org"


def known_visitor(app: LiveApp, *, name: str | None, email: str | None) -> VisitorSocket:
    """A shopper who told the site who they are (as the offline form or the transcript
    form would have stored it)."""
    shopper = VisitorSocket(app, origin=app.shop_origin)
    app.query(
        "UPDATE chat_visitor SET name = ?, email = ? WHERE id = ?",
        (name or "", email or "", shopper.ready["visitor"]["id"]),
    )
    return shopper


def not_cut(locator) -> bool:
    """The element shows all of its text: nothing overflows it."""
    return locator.evaluate("el => el.scrollWidth <= el.clientWidth")


def test_chats_are_titled_by_the_visitors_name_or_email_and_a_long_email_is_not_cut(
    new_context, live_app
):
    live_app.manage(
        "create_agent", "alice", "--password", live_app.agent_password, "--capacity", "3"
    )
    page = new_context(viewport={"width": 1000, "height": 760}).new_page()
    signed_in_and_available(page, live_app)
    grace = known_visitor(live_app, name="Grace Hopper", email="grace@navy.example")
    margaret = known_visitor(live_app, name=None, email=LONG_EMAIL)
    anonymous = VisitorSocket(live_app, origin=live_app.shop_origin)
    by_grace = grace.say("Is the Guji in stock?")["conversation"]
    by_margaret = margaret.say("Where is my order?")["conversation"]
    by_anonymous = anonymous.say("Hello?")["conversation"]

    expect(chat_item(page, by_grace).locator(".item-name")).to_have_text("Grace Hopper")
    expect(chat_item(page, by_grace).locator(".avatar")).to_have_text("GH")
    expect(chat_item(page, by_anonymous).locator(".item-name")).to_have_text(
        f"Visitor #{anonymous.ready['visitor']['id']}"
    )
    name = chat_item(page, by_margaret).locator(".item-name")
    expect(name).to_have_text(LONG_EMAIL)
    expect(name).to_have_attribute("title", LONG_EMAIL)
    assert not_cut(name)

    pane = open_chat(page, by_margaret)
    title = pane.locator(".pane-title")
    expect(title).to_have_text(LONG_EMAIL)
    expect(title).to_have_attribute("title", LONG_EMAIL)
    assert not_cut(title)
    box = title.bounding_box()
    assert box["x"] + box["width"] <= 1000
    expect(pane.get_by_role("textbox")).to_have_accessible_name(f"Reply to {LONG_EMAIL}")
