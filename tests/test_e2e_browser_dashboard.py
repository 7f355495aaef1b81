"""The agent dashboard in Debian's Chromium against a real daphne: alice signs in through
the login form and answers scripted visitors (real sockets from the shop's origin).

Every wait is Playwright's auto-waiting `expect` or a frame arriving on a visitor socket.
"""

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.browser import LiveApp, VisitorSocket, record_dialogs, screenshot_path

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser

XSS_PAYLOADS = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "javascript:alert(1)",
]

# Stands in for the browser's Notification so a test can see what the dashboard raised.
RECORD_NOTIFICATIONS = """
window.__notifications = [];
window.Notification = class {
  constructor(title, options) { window.__notifications.push({title, body: options.body}); }
  static get permission() { return "granted"; }
  static requestPermission() { return Promise.resolve("granted"); }
  close() {}
};
"""


# --- helpers ----------------------------------------------------------------------


def sign_in(page: Page, app: LiveApp) -> None:
    """Alice signs in through the real login form and lands on a connected dashboard."""
    page.goto(app.url + "/agent/")
    expect(page).to_have_url(app.url + "/accounts/login/?next=/agent/")
    page.get_by_label("Username").fill(app.agent_username)
    page.get_by_label("Password").fill(app.agent_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(app.url + "/agent/")
    expect(page.locator("#connection-text")).to_have_text("Connected")


def go_available(page: Page) -> None:
    page.get_by_role("button", name="Available").click()
    # Pressed only once the server answered `presence`.
    expect(page.get_by_role("button", name="Available")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("button", name="Away")).to_have_attribute("aria-pressed", "false")


def signed_in_and_available(page: Page, app: LiveApp) -> None:
    sign_in(page, app)
    go_available(page)


def chat_item(page: Page, conversation: int):
    """The chat's entry, in the open chats or the ended ones."""
    return page.locator(f'.chat-list li[data-conversation="{conversation}"]')


def chat_pane(page: Page, conversation: int):
    return page.locator(f'section.pane[data-conversation="{conversation}"]')


def open_chat(page: Page, conversation: int):
    chat_item(page, conversation).get_by_role("button").click()
    pane = chat_pane(page, conversation)
    expect(pane).to_be_visible()
    return pane


def reply(pane, text: str) -> None:
    composer = pane.get_by_role("textbox")
    composer.fill(text)
    composer.press("Enter")


def visitor(app: LiveApp) -> VisitorSocket:
    """A shopper on the shop's page, talking over a real socket."""
    return VisitorSocket(app, origin=app.shop_origin)


def visitor_name(shopper: VisitorSocket) -> str:
    return f"Visitor #{shopper.ready['visitor']['id']}"


def settle(shopper: VisitorSocket) -> None:
    """Everything the server sent this socket before a fresh ping is read now."""
    shopper.send({"type": "ping"})
    shopper.expect("pong")


# --- tests ------------------------------------------------------------------------


def test_agent_answers_a_new_chat_with_typing_read_receipts_and_an_unread_badge(
    new_context, live_app
):
    page = new_context().new_page()
    signed_in_and_available(page, live_app)
    assert live_app.query("SELECT status FROM agents_agentprofile") == [("available",)]

    shopper = visitor(live_app)
    first = shopper.say("Hi, my kettle arrived without a lid")
    conversation = first["conversation"]

    item = chat_item(page, conversation)
    expect(item).to_contain_text(visitor_name(shopper))
    expect(item).to_contain_text("Hi, my kettle arrived without a lid")
    expect(item.locator(".badge")).to_have_text("1 unread")
    expect(item).to_contain_text("Waiting")
    expect(page).to_have_title("(1) supportdesk")

    pane = open_chat(page, conversation)
    expect(item.locator(".badge")).to_be_hidden()
    expect(page).to_have_title("supportdesk")
    shopper.expect("read", by="agent", seq=first["seq"])

    # Typing travels both ways.
    pane.get_by_role("textbox").press_sequentially("Sorry")
    shopper.expect("typing", from_="agent", active=True)
    shopper.send({"type": "typing", "active": True})
    expect(pane.get_by_text(f"{visitor_name(shopper)} is typing…")).to_be_visible()

    pane.get_by_role("textbox").fill("")
    reply(pane, "Sorry about that! A new lid ships today: https://shop.example/track/42")
    answer = shopper.expect("message", sender="agent")
    assert (
        answer["body"] == "Sorry about that! A new lid ships today: https://shop.example/track/42"
    )
    expect(pane.locator(".msg-agent .receipt")).to_have_text("Sent")
    expect(pane.get_by_text("is typing…")).to_be_hidden()  # the reply answered the typing

    shopper.send({"type": "read", "seq": answer["seq"]})
    expect(pane.locator(".msg-agent .receipt")).to_have_text("Seen")

    # Shift+Enter is a new line, Enter sends both lines as one message.
    composer = pane.get_by_role("textbox")
    composer.press_sequentially("Line one")
    composer.press("Shift+Enter")
    composer.press_sequentially("line two")
    composer.press("Enter")
    assert shopper.expect("message", sender="agent")["body"] == "Line one\nline two"
    # The newest message carries the receipt, and the visitor has not read it yet.
    expect(pane.locator(".msg-agent .receipt")).to_have_text(["", "Sent"])


def test_message_in_another_chat_raises_badge_title_and_desktop_notification(new_context, live_app):
    context = new_context()
    context.add_init_script(RECORD_NOTIFICATIONS)
    page = context.new_page()
    signed_in_and_available(page, live_app)
    anna, ben = visitor(live_app), visitor(live_app)
    anna_chat = anna.say("Hello from Anna")["conversation"]
    ben_chat = ben.say("Hello from Ben")["conversation"]
    expect(page).to_have_title("(2) supportdesk")
    page.wait_for_function("window.__notifications.length === 2")
    assert page.evaluate("window.__notifications.map(n => n.title)") == [
        f"New chat from {visitor_name(anna)}",
        f"New chat from {visitor_name(ben)}",
    ]

    open_chat(page, anna_chat)
    expect(page).to_have_title("(1) supportdesk")
    ben.say("Are you there?")

    expect(chat_item(page, ben_chat).locator(".badge")).to_have_text("2 unread")
    expect(page).to_have_title("(2) supportdesk")
    page.wait_for_function("window.__notifications.length === 3")
    assert page.evaluate("window.__notifications[2]") == {
        "title": visitor_name(ben),
        "body": "Are you there?",
    }
    # A message in the chat being looked at is read on arrival: no badge, no popup.
    anna.say("Still here")
    expect(chat_pane(page, anna_chat).get_by_text("Still here")).to_be_visible()
    expect(chat_item(page, anna_chat).locator(".badge")).to_be_hidden()
    assert page.evaluate("window.__notifications.length") == 3


def test_visitor_markup_and_javascript_links_render_as_text_and_never_run(new_context, live_app):
    page = new_context().new_page()
    dialogs = record_dialogs(page)
    signed_in_and_available(page, live_app)
    shopper = visitor(live_app)
    conversation = shopper.say(XSS_PAYLOADS[0])["conversation"]
    for payload in XSS_PAYLOADS[1:]:
        shopper.say(payload)
    last = shopper.say("Help page: https://shop.example/help?q=lid.")

    pane = open_chat(page, conversation)
    shopper.expect("read", by="agent", seq=last["seq"])
    bubbles = pane.locator(".msg-visitor .bubble")
    expect(bubbles).to_have_text([*XSS_PAYLOADS, "Help page: https://shop.example/help?q=lid."])
    log = pane.get_by_role("log")
    expect(log.locator("img")).to_have_count(0)
    expect(log.locator("script")).to_have_count(0)
    # Only the http(s) URL became a link, without the sentence's full stop.
    links = log.get_by_role("link")
    expect(links).to_have_count(1)
    expect(links).to_have_attribute("href", "https://shop.example/help?q=lid")
    expect(links).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(links).to_have_attribute("target", "_blank")
    # The list preview is text too.
    expect(chat_item(page, conversation).locator(".item-preview")).to_have_text(
        "Help page: https://shop.example/help?q=lid."
    )
    assert dialogs == []


def test_six_concurrent_chats_all_show_and_each_visitor_gets_its_own_answer(new_context, live_app):
    live_app.manage(
        "create_agent", "alice", "--password", live_app.agent_password, "--capacity", "6"
    )
    page = new_context().new_page()
    signed_in_and_available(page, live_app)
    expect(page.locator("#capacity")).to_have_text("6")

    shoppers = [visitor(live_app) for _ in range(6)]
    chats = [s.say(f"Question from shopper {n}")["conversation"] for n, s in enumerate(shoppers)]

    expect(page.locator("#chat-list > li")).to_have_count(6)
    expect(page.locator("#load")).to_have_text("6")
    expect(page).to_have_title("(6) supportdesk")
    for n, conversation in enumerate(chats):
        expect(chat_item(page, conversation).locator(".badge")).to_have_text("1 unread")
        pane = open_chat(page, conversation)
        expect(pane.locator(".msg-visitor .bubble")).to_have_text([f"Question from shopper {n}"])
        reply(pane, f"Answer for shopper {n}")
        expect(pane.locator(".msg-agent .receipt")).to_have_text("Sent")
    expect(page).to_have_title("supportdesk")

    for n, shopper in enumerate(shoppers):
        shopper.expect("message", sender="agent", body=f"Answer for shopper {n}")
        shopper.say(f"Thanks from shopper {n}")
    for n, shopper in enumerate(shoppers):
        settle(shopper)
        assert [m["body"] for m in shopper.received("message", sender="agent")] == [
            f"Answer for shopper {n}"
        ]
    # Follow-ups land in their own chats; only the chat on screen has no badge.
    for n, conversation in enumerate(chats):
        pane = chat_pane(page, conversation)
        expect(pane.locator(".msg-visitor", has_text=f"Thanks from shopper {n}")).to_have_count(1)
        badge = chat_item(page, conversation).locator(".badge")
        if conversation == chats[-1]:
            expect(badge).to_be_hidden()
        else:
            expect(badge).to_have_text("1 unread")
    expect(page).to_have_title("(5) supportdesk")


def test_closing_a_chat_tells_the_visitor_and_greys_it_out(new_context, live_app):
    page = new_context().new_page()
    signed_in_and_available(page, live_app)
    leaving, staying = visitor(live_app), visitor(live_app)
    done = leaving.say("That's all, thanks")["conversation"]
    other = staying.say("One more thing")["conversation"]
    expect(page.locator("#load")).to_have_text("2")

    pane = open_chat(page, done)
    pane.get_by_role("button", name="Close chat").click()

    leaving.expect("conversation.closed", conversation=done, by="agent")
    # The pane's notice (the composer's upload line is a status too, and stays empty).
    expect(pane.locator(".pane-notice")).to_have_role("status")
    expect(pane.locator(".pane-notice")).to_have_text("This chat was closed by you.")
    expect(pane.get_by_role("textbox")).to_be_disabled()
    expect(page.locator("#load")).to_have_text("1")
    expect(chat_item(page, done)).to_contain_text("Closed")
    # Apart from the open ones, under "Ended".
    expect(page.locator("#ended-list > li")).to_have_count(1)
    expect(page.get_by_role("list", name="Ended")).to_contain_text("That's all, thanks")

    # The visitor may end it too.
    staying.send({"type": "conversation.close"})
    other_pane = open_chat(page, other)
    expect(other_pane.locator(".pane-notice")).to_have_text("This chat was closed by the visitor.")
    expect(page.locator("#load")).to_have_text("0")

    other_pane.get_by_role("button", name="Remove from list").click()
    expect(chat_item(page, other)).to_have_count(0)
    expect(page.locator("#chat-list > li")).to_have_count(0)
    expect(page.locator("#ended-list > li")).to_have_count(1)


def test_offline_and_back_the_dashboard_misses_nothing_and_doubles_nothing(new_context, live_app):
    context = new_context()
    page = context.new_page()
    signed_in_and_available(page, live_app)
    shopper = visitor(live_app)
    conversation = shopper.say("Is the blue kettle in stock?")["conversation"]
    pane = open_chat(page, conversation)
    reply(pane, "Let me check")
    shopper.expect("message", sender="agent", body="Let me check")
    # The ack, not just the visitor's copy, must be in before the cut.
    expect(pane.locator(".msg-agent .receipt")).to_have_text(["Sent"])

    context.set_offline(True)
    expect(page.locator("#connection-text")).to_have_text("Offline")
    shopper.say("Also, does it come in red?")
    reply(pane, "Yes, both are in stock")
    expect(pane.get_by_text("Waiting for connection…")).to_be_visible()

    context.set_offline(False)
    expect(page.locator("#connection-text")).to_have_text("Connected")
    expect(pane.locator(".msg .bubble")).to_have_text(
        [
            "Is the blue kettle in stock?",
            "Let me check",
            "Also, does it come in red?",
            "Yes, both are in stock",
        ]
    )
    expect(pane.locator(".msg-agent .receipt")).to_have_text(["", "Sent"])
    shopper.expect("message", sender="agent", body="Yes, both are in stock")
    settle(shopper)
    assert len(shopper.received("message", body="Yes, both are in stock")) == 1
    assert live_app.query(
        "SELECT count(*) FROM chat_message WHERE body = ?", ("Yes, both are in stock",)
    ) == [(1,)]


def test_chat_list_and_composer_work_from_the_keyboard(new_context, live_app):
    page = new_context().new_page()
    signed_in_and_available(page, live_app)
    first, second = visitor(live_app), visitor(live_app)
    first.say("First in line")
    second_chat = second.say("Second in line")["conversation"]
    expect(page.locator("#chat-list > li")).to_have_count(2)

    page.locator("#chat-list .chat-item").first.focus()
    page.keyboard.press("ArrowDown")
    expect(chat_item(page, second_chat).get_by_role("button")).to_be_focused()
    page.keyboard.press("Enter")
    pane = chat_pane(page, second_chat)
    expect(pane.get_by_role("textbox")).to_be_focused()
    page.keyboard.type("Typed without a mouse")
    page.keyboard.press("Enter")
    second.expect("message", sender="agent", body="Typed without a mouse")
    expect(chat_item(page, second_chat).get_by_role("button")).to_have_attribute(
        "aria-current", "true"
    )


def a_busy_inbox(page: Page, app: LiveApp):
    """Alice with three chats: the first open, answered, "Seen", and the visitor typing."""
    app.manage("create_agent", "alice", "--password", app.agent_password, "--capacity", "4")
    signed_in_and_available(page, app)
    shoppers = [visitor(app) for _ in range(3)]
    opening = [
        "Hi! My order #1043 hasn't arrived yet. Can you check where it is?",
        "Do you ship to Norway?",
        "Is the copper kettle induction-compatible?",
    ]
    chats = [s.say(text)["conversation"] for s, text in zip(shoppers, opening, strict=True)]
    pane = open_chat(page, chats[0])
    reply(pane, "Hi! Let me look that up for you.")
    shoppers[0].expect("message", sender="agent")
    reply(pane, "It left our warehouse yesterday: https://shop.example/track/1043")
    last = shoppers[0].expect("message", sender="agent")
    shoppers[0].send({"type": "read", "seq": last["seq"]})
    shoppers[0].say("Great, thank you!")
    shoppers[0].send({"type": "typing", "active": True})
    expect(pane.locator(".msg-agent .receipt")).to_have_text(["", "Seen"])
    expect(pane.get_by_text("is typing…")).to_be_visible()
    expect(page.locator("#chat-list .badge:not([hidden])")).to_have_count(2)
    return chats, pane


def test_dashboard_has_no_serious_or_critical_accessibility_violations(new_context, live_app):
    page = new_context().new_page()
    a_busy_inbox(page, live_app)

    results = Axe().run(page)

    serious = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == [], results.generate_report()


def test_desktop_screenshot_dashboard_shows_list_and_chat_side_by_side(
    new_context, live_app, tmp_path
):
    page = new_context(viewport={"width": 1280, "height": 800}).new_page()
    _chats, pane = a_busy_inbox(page, live_app)
    sidebar = page.get_by_role("complementary", name="Your chats").bounding_box()
    chat = pane.bounding_box()
    assert sidebar["x"] == 0
    assert chat["x"] >= sidebar["x"] + sidebar["width"]
    assert chat["x"] + chat["width"] == 1280
    page.screenshot(path=screenshot_path("dashboard.png", tmp_path))


def test_mobile_screenshot_dashboard_shows_the_list_then_one_chat_full_width(
    new_context, live_app, tmp_path
):
    page = new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    ).new_page()
    chats, pane = a_busy_inbox(page, live_app)
    # The open chat fills the screen; "Chats" goes back to the list.
    expect(page.get_by_role("complementary", name="Your chats")).to_be_hidden()
    assert pane.bounding_box()["width"] == 390
    # The visitor panel starts folded on a phone, leaving the screen to the chat.
    expect(pane.locator(".visitor-facts")).to_be_hidden()
    expect(pane.get_by_role("button", name="About the visitor")).to_have_attribute(
        "aria-expanded", "false"
    )
    page.screenshot(path=screenshot_path("dashboard-mobile-chat.png", tmp_path))

    pane.get_by_role("button", name="Back to chats").click()
    expect(pane).to_be_hidden()
    expect(chat_item(page, chats[0]).get_by_role("button")).to_be_focused()
    assert page.locator("#chat-list").bounding_box()["width"] <= 390
    page.screenshot(path=screenshot_path("dashboard-mobile-list.png", tmp_path))
