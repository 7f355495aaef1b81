"""New chats and messages announce themselves while the dashboard's tab is in the
background (Debian's Chromium, real daphne): the title's unread count, a chime (Web
Audio), and a desktop notification once the agent allowed them, asked from a click and
never on page load.

The browser's Notification and AudioContext are stand-ins that record what the page
did, and the tab's focus is the test's to give or take (headless Chromium has no real
background tab). Every wait is Playwright's auto-waiting `expect`.
"""

import pytest
from playwright.sync_api import expect

from tests.browser import VisitorSocket
from tests.test_e2e_browser_dashboard import open_chat, sign_in, signed_in_and_available

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser

STAND_INS = """
window.__background = false;
Object.defineProperty(document, "visibilityState", {
  get: () => (window.__background ? "hidden" : "visible"),
});
document.hasFocus = () => !window.__background;
window.__asked = 0;
window.__permission = "default";
window.__notifications = [];
window.Notification = class {
  constructor(title, options) { window.__notifications.push({title, body: options.body}); }
  static get permission() { return window.__permission; }
  static requestPermission() {
    window.__asked += 1;
    window.__permission = "granted";
    return Promise.resolve("granted");
  }
  close() {}
};
window.__notes = 0;
window.AudioContext = class {
  constructor() { this.state = "suspended"; this.currentTime = 0; this.destination = {}; }
  resume() { this.state = "running"; return Promise.resolve(); }
  createGain() {
    const param = {setValueAtTime() {}, exponentialRampToValueAtTime() {}};
    return {gain: param, connect: (next) => next};
  }
  createOscillator() {
    return {
      frequency: {}, connect: (next) => next, stop() {},
      start() { window.__notes += 1; },
    };
  }
};
"""


def background(page, hidden: bool) -> None:
    """The tab goes to the background, or comes back, as the browser would tell it."""
    page.evaluate(
        "hidden => { window.__background = hidden;"
        " document.dispatchEvent(new Event('visibilitychange')); }",
        hidden,
    )


def test_in_a_background_tab_new_chats_and_messages_count_in_the_title_chime_and_notify(
    new_context, live_app
):
    context = new_context()
    context.add_init_script(STAND_INS)
    page = context.new_page()
    sign_in(page, live_app)
    assert page.evaluate("window.__asked") == 0  # nothing is asked on page load
    # A click (here: going available) asks, and lets sound play from now on.
    page.get_by_role("button", name="Available").click()
    expect(page.get_by_role("button", name="Available")).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("window.__asked") == 1

    background(page, True)
    shopper = VisitorSocket(live_app, origin=live_app.shop_origin)
    conversation = shopper.say("Anyone there?")["conversation"]
    expect(page).to_have_title("(1) supportdesk")
    page.wait_for_function("window.__notes === 2")  # one chime, two notes
    page.wait_for_function("window.__notifications.length === 1")
    assert page.evaluate("window.__notifications[0].title").startswith("New chat from Visitor #")

    background(page, False)
    pane = open_chat(page, conversation)
    expect(page).to_have_title("supportdesk")

    background(page, True)
    shopper.say("Hello?")
    expect(page).to_have_title("(1) supportdesk")
    page.wait_for_function("window.__notes === 4")
    page.wait_for_function("window.__notifications.length === 2")
    assert page.evaluate("window.__notifications[1].body") == "Hello?"

    # Back in front, on that chat: read on arrival, no chime, no notification.
    background(page, False)
    expect(page).to_have_title("supportdesk")
    shopper.say("Ah, there you are")
    expect(pane.get_by_text("Ah, there you are")).to_be_visible()
    assert page.evaluate("[window.__notes, window.__notifications.length]") == [4, 2]
    assert page.evaluate("window.__asked") == 1  # asked once


def test_the_sound_can_be_turned_off_and_stays_off(new_context, live_app):
    context = new_context()
    context.add_init_script(STAND_INS)
    page = context.new_page()
    signed_in_and_available(page, live_app)
    sound = page.get_by_role("button", name="Sound")
    expect(sound).to_have_attribute("aria-pressed", "true")
    sound.click()
    expect(sound).to_have_attribute("aria-pressed", "false")
    page.reload()
    expect(page.get_by_role("button", name="Sound")).to_have_attribute("aria-pressed", "false")
    page.get_by_role("button", name="Available").click()
    background(page, True)
    VisitorSocket(live_app, origin=live_app.shop_origin).say("Anyone there?")
    expect(page).to_have_title("(1) supportdesk")
    assert page.evaluate("window.__notes") == 0
