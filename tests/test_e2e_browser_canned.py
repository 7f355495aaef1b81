"""Canned responses in the real dashboard (Debian's Chromium, real daphne): alice keeps her
snippets in the "Canned responses" dialog, types `/refund` in a reply, it expands, and the
visitor receives the expanded text.

Every wait is Playwright's auto-waiting `expect` or a frame arriving on a visitor socket.
"""

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.browser import LiveApp, VisitorSocket
from tests.test_e2e_browser_dashboard import open_chat, signed_in_and_available

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser

REFUND = "Your refund of the full amount is on its way; allow 3-5 working days."
HOURS = "We are open Monday to Friday, 9:00-17:00."


def serious_violations(page: Page) -> list:
    results = Axe().run(page)
    return [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def add_canned_response(page: Page, shortcut: str, body: str) -> None:
    dialog = page.get_by_role("dialog", name="Canned responses")
    if not dialog.is_visible():
        page.get_by_role("button", name="Canned responses").click()
    dialog.get_by_label("Shortcut").fill(shortcut)
    dialog.get_by_label("Text").fill(body)
    dialog.get_by_role("button", name="Add response").click()


def add_shared_canned_response(app: LiveApp, shortcut: str, body: str) -> None:
    app.manage(
        "shell",
        "-c",
        "from agents.models import CannedResponse;"
        f"CannedResponse.objects.create(owner=None, shortcut={shortcut!r}, body={body!r})",
    )


def test_typing_slash_refund_expands_it_and_the_visitor_receives_the_text(new_context, live_app):
    page = new_context().new_page()
    signed_in_and_available(page, live_app)

    add_canned_response(page, "refund", REFUND)
    dialog = page.get_by_role("dialog", name="Canned responses")
    expect(dialog.locator('li[data-shortcut="refund"]')).to_contain_text(REFUND)
    # The same shortcut again is refused, and the dialog says why.
    add_canned_response(page, "refund", "Another text")
    expect(dialog.get_by_role("alert")).to_have_text(
        "There is already a response with the shortcut /refund."
    )
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    shopper = VisitorSocket(live_app, origin=live_app.shop_origin)
    conversation = shopper.say("I sent the kettle back, where is my money?")["conversation"]
    pane = open_chat(page, conversation)
    composer = pane.get_by_role("textbox")

    composer.press_sequentially("/ref")
    expect(pane.get_by_role("listbox", name="Canned responses")).to_be_visible()
    expect(pane.get_by_role("option")).to_have_count(1)
    composer.press_sequentially("und")
    composer.press("Space")
    expect(composer).to_have_value(REFUND)
    expect(pane.get_by_role("listbox", name="Canned responses")).to_be_hidden()

    composer.press("Enter")
    answer = shopper.expect("message", sender="agent")
    assert answer["body"] == REFUND
    expect(pane.locator(".msg-agent .bubble").last).to_have_text(REFUND)

    # An unknown shortcut is left as typed: Enter sends it unchanged.
    composer.press_sequentially("/nothing-like-this")
    composer.press("Enter")
    assert shopper.expect("message", sender="agent")["body"] == "/nothing-like-this"


def test_shared_snippet_is_picked_from_the_list_and_another_tab_sees_new_snippets_at_once(
    new_context, live_app
):
    add_shared_canned_response(live_app, "hours", HOURS)
    add_shared_canned_response(live_app, "hello", "Hello! How can I help?")
    context = new_context()
    page = context.new_page()
    signed_in_and_available(page, live_app)
    shopper = VisitorSocket(live_app, origin=live_app.shop_origin)
    conversation = shopper.say("When are you open?")["conversation"]
    pane = open_chat(page, conversation)
    composer = pane.get_by_role("textbox")

    # Shared snippets are listed (read-only for alice) and offered while typing.
    page.get_by_role("button", name="Canned responses").click()
    dialog = page.get_by_role("dialog", name="Canned responses")
    hours_item = dialog.locator('li[data-shortcut="hours"]')
    expect(hours_item).to_contain_text("Shared")
    expect(hours_item.get_by_role("button", name="Edit /hours")).to_be_hidden()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    composer.press_sequentially("Hi! /h")
    options = pane.get_by_role("option")
    expect(options).to_have_text(["/helloHello! How can I help?", "/hours" + HOURS])
    expect(options.first).to_have_attribute("aria-selected", "true")
    composer.press("ArrowDown")
    expect(options.nth(1)).to_have_attribute("aria-selected", "true")
    composer.press("Enter")  # picks, does not send
    expect(composer).to_have_value("Hi! " + HOURS)
    composer.press("Enter")
    assert shopper.expect("message", sender="agent")["body"] == "Hi! " + HOURS

    # A second tab of alice's: a snippet added in the first one works there at once.
    other = context.new_page()
    other.goto(live_app.url + "/agent/")
    expect(other.locator("#connection-text")).to_have_text("Connected")
    other_pane = open_chat(other, conversation)
    add_canned_response(page, "thanks", "Thanks for waiting!")
    other.get_by_role("button", name="Canned responses").click()
    other_dialog = other.get_by_role("dialog", name="Canned responses")
    expect(other_dialog.locator('li[data-shortcut="thanks"]')).to_be_visible()
    other.keyboard.press("Escape")
    # Closing hands focus back to the dialog's button.
    expect(other_dialog).to_be_hidden()
    expect(other.get_by_role("button", name="Canned responses")).to_be_focused()
    other_composer = other_pane.get_by_role("textbox")
    other_composer.press_sequentially("/thanks")
    other_composer.press("Tab")
    expect(other_composer).to_have_value("Thanks for waiting!")
    stored = live_app.query("SELECT shortcut, owner_id IS NULL FROM agents_cannedresponse")
    assert sorted(stored) == [("hello", 1), ("hours", 1), ("thanks", 0)]


def test_the_dialog_and_the_suggestion_list_have_no_serious_accessibility_violations(
    new_context, live_app
):
    add_shared_canned_response(live_app, "hours", HOURS)
    page = new_context().new_page()
    signed_in_and_available(page, live_app)
    shopper = VisitorSocket(live_app, origin=live_app.shop_origin)
    pane = open_chat(page, shopper.say("Hello?")["conversation"])

    add_canned_response(page, "refund", REFUND)
    dialog = page.get_by_role("dialog", name="Canned responses")
    expect(dialog.locator("li.canned-item")).to_have_count(2)
    assert serious_violations(page) == []

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    # Focus goes back to the button that opened the dialog.
    expect(page.get_by_role("button", name="Canned responses")).to_be_focused()
    composer = pane.get_by_role("textbox")
    composer.press_sequentially("/")
    expect(pane.get_by_role("option")).to_have_count(2)
    expect(composer).to_have_attribute(
        "aria-activedescendant", f"canned-suggest-{pane.get_attribute('data-conversation')}-0"
    )
    assert serious_violations(page) == []
    # Escape closes the list and leaves the text as typed.
    composer.press("Escape")
    expect(pane.get_by_role("listbox")).to_be_hidden()
    expect(composer).to_have_value("/")


def test_a_composer_focused_as_the_dialog_closes_keeps_the_focus(new_context, live_app):
    # The dialog's `close` event runs a task after it hides; an agent who clicks into a
    # reply by then must keep typing there, not into the "Canned responses" button.
    page = new_context().new_page()
    signed_in_and_available(page, live_app)
    shopper = VisitorSocket(live_app, origin=live_app.shop_origin)
    pane = open_chat(page, shopper.say("Hello?")["conversation"])
    page.get_by_role("button", name="Canned responses").click()
    expect(page.get_by_role("dialog", name="Canned responses")).to_be_visible()

    focused = pane.get_by_role("textbox").evaluate(
        """async (composer) => {
            const dialog = document.getElementById("canned-dialog");
            const closed = new Promise((done) => dialog.addEventListener("close", done));
            document.getElementById("canned-close").click();
            composer.focus();
            await closed;
            return document.activeElement === composer;
        }"""
    )
    assert focused
