"""How the agent dashboard lays a chat out (Debian's Chromium, real daphne): chats titled
by the visitor's name or email, long emails whole in a 1,000 px window; the visitor
panel as a right-hand sidebar that folds away and stays folded, with a "Verified" badge
for a user the site's server vouched for; the pane's buttons and the composer's hint.

Every wait is Playwright's auto-waiting `expect` or a frame arriving on a socket.
"""

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.browser import LiveApp, VisitorSocket
from tests.test_e2e_browser_api import shop_with_a_customer
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


def test_the_visitor_panel_is_a_right_hand_sidebar_that_folds_away_and_stays_folded(
    new_context, live_app
):
    page = new_context().new_page()
    signed_in_and_available(page, live_app)
    shopper = VisitorSocket(live_app, origin=live_app.shop_origin)
    conversation = shopper.say("Which grinder for a moka pot?")["conversation"]
    pane = open_chat(page, conversation)
    panel = pane.get_by_role("region", name="About the visitor")
    log = pane.get_by_role("log")
    expect(panel).to_be_visible()
    expect(panel.locator(".visitor-previous-count")).to_have_text("None: this is their first chat")
    # Beside the messages, on the right, from the top of the log down: not above it.
    panel_box, log_box = panel.bounding_box(), log.bounding_box()
    assert panel_box["x"] >= log_box["x"] + log_box["width"]
    assert panel_box["x"] + panel_box["width"] == 1280
    assert abs(panel_box["y"] - log_box["y"]) < 1

    toggle = pane.get_by_role("button", name="About the visitor")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    toggle.click()
    expect(panel).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    # The log takes the room.
    assert log.bounding_box()["width"] > log_box["width"] + panel_box["width"] - 2

    # Remembered across a reload.
    page.reload()
    expect(page.locator("#connection-text")).to_have_text("Connected")
    pane = open_chat(page, conversation)
    toggle = pane.get_by_role("button", name="About the visitor")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(pane.locator(".visitor-panel")).to_be_hidden()
    toggle.click()
    expect(pane.get_by_role("region", name="About the visitor")).to_be_visible()


def test_a_customer_the_shop_signs_in_mid_chat_shows_as_verified_with_their_user_id(
    new_context, live_app, shop
):
    """Issue 17: a verified identity is shown on the dashboard (the demo shop's own
    sign-in passes the signed user id with the widget's identify)."""
    customer = shop_with_a_customer(live_app, shop)
    dashboard = new_context().new_page()
    signed_in_and_available(dashboard, live_app)
    page = new_context().new_page()
    page.goto(live_app.shop_url)
    page.get_by_role("link", name="Help").click()
    frame = page.frame_locator("#supportdesk-frame")
    composer = frame.get_by_role("textbox", name="Write a message")
    composer.fill("Has my order shipped?")
    composer.press("Enter")
    expect(dashboard.locator("#chat-list li")).to_have_count(1)
    conversation = live_app.query("SELECT max(id) FROM chat_conversation")[0][0]
    pane = open_chat(dashboard, conversation)
    expect(pane.get_by_text("Has my order shipped?")).to_be_visible()
    # Not vouched for yet: no badge, however the visitor calls themselves.
    expect(pane.locator(".visitor-verified")).to_be_hidden()
    expect(pane.locator(".pane-verified")).to_be_hidden()

    # The shop signs its customer in: the page reloads and the widget identifies them.
    page.get_by_role("link", name="Sign in").click()
    expect(page.get_by_role("link", name="Ada Lovelace · Sign out")).to_be_visible()

    panel = pane.get_by_role("region", name="About the visitor")
    expect(panel.locator(".visitor-verified")).to_have_text(
        f"Verified User ID {customer['user_id']}"
    )
    expect(pane.locator(".pane-verified")).to_be_visible()
    expect(pane.locator(".pane-title")).to_have_text("Ada Lovelace")
    expect(chat_item(dashboard, conversation).locator(".item-name")).to_have_text("Ada Lovelace")

    results = Axe().run(dashboard)  # the sidebar and its badges, as they are now
    serious = [
        (v["id"], [n["target"] for n in v["nodes"]])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == [], results.generate_report()


DANGER_RED = "rgb(179, 38, 30)"  # base.css's --danger


def look(pane, button: str) -> list[str]:
    """A button's text colour, border colour and background, as drawn."""
    return pane.get_by_role("button", name=button).evaluate(
        "el => [getComputedStyle(el).color, getComputedStyle(el).borderColor,"
        " getComputedStyle(el).backgroundColor]"
    )


def test_transfer_is_not_styled_as_destructive_and_the_note_toggle_shares_the_hints_line(
    new_context, live_app
):
    shopper = VisitorSocket(live_app, origin=live_app.shop_origin)
    for width in (1280, 1000):
        page = new_context(viewport={"width": width, "height": 760}).new_page()
        signed_in_and_available(page, live_app)
        if width == 1280:
            conversation = shopper.say("Can I change my order?")["conversation"]
        pane = open_chat(page, conversation)

        close, transfer = look(pane, "Close chat"), look(pane, "Transfer")
        assert close[0] == DANGER_RED  # the destructive one is red
        assert DANGER_RED not in transfer
        assert transfer != close

        # The Note toggle and the keys' hint: one line, side by side.
        note = pane.locator(".composer-note-toggle").bounding_box()
        hint = pane.locator(".composer-keys")
        expect(hint).to_be_visible()
        keys = hint.bounding_box()
        assert abs((note["y"] + note["height"] / 2) - (keys["y"] + keys["height"] / 2)) < 2
        assert keys["x"] > note["x"] + note["width"]
        page.close()
