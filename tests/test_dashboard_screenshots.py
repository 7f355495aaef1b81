"""The agent dashboard's issue-16 views as an agent sees them, with screenshots for the
README (`make screenshots` writes them to docs/screenshots/; otherwise they go to tmp):
the visitor sidebar with a verified customer, the queue view, and a chat after a
transfer, from the agent who received it and from the one who passed it on.

Each test first checks that the page shows what its picture is meant to show, then
takes the picture of the whole window.
"""

import re

import pytest
from playwright.sync_api import expect

from tests.browser import LiveApp, VisitorSocket, screenshot_path
from tests.test_e2e_browser_api import shop_with_a_customer
from tests.test_e2e_browser_dashboard import (
    chat_item,
    open_chat,
    reply,
    sign_in,
    signed_in_and_available,
)
from tests.test_e2e_browser_features import sign_in_as
from tests.test_features_screenshots import WINDOWS_CHROME

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser


def named_shopper(app: LiveApp, name: str, email: str | None = None) -> VisitorSocket:
    """A shopper who told the site their name (as the offline or transcript form would)."""
    shopper = VisitorSocket(app, origin=app.shop_origin)
    app.query(
        "UPDATE chat_visitor SET name = ?, email = ? WHERE id = ?",
        (name, email or "", shopper.ready["visitor"]["id"]),
    )
    return shopper


def create_bob(app: LiveApp) -> None:
    app.manage(
        "create_agent", "bob", "--password", "bob-pass-1234", "--capacity", "2",
        "--display-name", "Bob",
    )  # fmt: skip


def test_sidebar_screenshot_a_verified_customer_beside_the_chat(
    new_context, live_app, shop, tmp_path
):
    customer = shop_with_a_customer(live_app, shop)
    dashboard = new_context().new_page()
    signed_in_and_available(dashboard, live_app)
    page = new_context(timezone_id="Europe/London", user_agent=WINDOWS_CHROME).new_page()
    page.goto(live_app.shop_url)
    page.get_by_role("link", name="Sign in").click()
    expect(page.get_by_role("link", name="Ada Lovelace · Sign out")).to_be_visible()
    page.get_by_role("link", name="Help").click()
    composer = page.frame_locator("#supportdesk-frame").get_by_role("textbox")
    composer.fill("Hi! I ordered the copper kettle on Monday. Has it shipped yet?")
    composer.press("Enter")
    expect(dashboard.locator("#chat-list li")).to_have_count(1)
    conversation = live_app.query("SELECT max(id) FROM chat_conversation")[0][0]
    pane = open_chat(dashboard, conversation)
    reply(pane, "Hi Ada! It left our warehouse this morning: https://shop.example/track/2211")
    expect(pane.locator(".msg-agent .receipt")).to_have_text("Seen")  # the chat is open

    panel = pane.get_by_role("region", name="About the visitor")
    expect(panel.locator(".visitor-verified")).to_have_text(
        f"Verified User ID {customer['user_id']}"
    )
    expect(panel.locator(".visitor-who")).to_have_text("Ada Lovelace\nada@kettle-crane.example")
    expect(panel.locator(".visitor-browser")).to_have_text("Chrome 131 on Windows 10")
    expect(panel.locator(".visitor-time")).to_contain_text("(Europe/London)")
    expect(pane.locator(".pane-title")).to_have_text("Ada Lovelace")
    expect(pane.locator(".pane-verified")).to_be_visible()
    dashboard.screenshot(path=screenshot_path("dashboard-sidebar.png", tmp_path))


def test_queue_view_screenshot_who_waits_how_long_and_take(new_context, live_app, tmp_path):
    live_app.query("UPDATE chat_site SET agents_pick_from_queue = 1")
    live_app.manage(
        "create_agent", "alice", "--password", live_app.agent_password, "--capacity", "1"
    )
    dashboard = new_context().new_page()
    signed_in_and_available(dashboard, live_app)
    busy = named_shopper(live_app, "Grace Hopper")
    busy.say("Do you ship to Norway?")
    expect(dashboard.locator("#chat-list li")).to_have_count(1)
    waiting = [
        ("Ada Lovelace", "ada@example.org", "My grinder rattles when the burrs turn."),
        ("", "margaret.hamilton@apollo-guidance.example.org", "Can I change my address?"),
        ("Hedy Lamarr", None, "Is the Guji still in stock? I would like two bags."),
    ]
    for name, email, said in waiting:
        named_shopper(live_app, name, email).say(said)
    expect(dashboard.locator("#queue-length")).to_have_text("3")

    dashboard.get_by_role("button", name=re.compile("^In queue")).click()
    view = dashboard.get_by_role("region", name="Queue")
    rows = view.get_by_role("listitem")
    expect(rows).to_have_count(3)
    expect(rows.locator(".queue-name")).to_have_text(
        ["Ada Lovelace", "margaret.hamilton@apollo-guidance.example.org", "Hedy Lamarr"]
    )
    expect(rows.locator(".queue-said")).to_have_text([said for _, _, said in waiting])
    expect(rows.get_by_role("button", name=re.compile("^Take"))).to_have_count(3)
    expect(rows.first.locator(".queue-wait")).to_have_text(re.compile(r"^Waiting [1-9]\d*s$"))
    dashboard.screenshot(path=screenshot_path("dashboard-queue.png", tmp_path))


def test_transfer_screenshot_bob_reads_alices_replies_under_her_name(
    new_context, live_app, tmp_path
):
    create_bob(live_app)
    alice_page = new_context().new_page()
    sign_in(alice_page, live_app)
    bob_page = new_context().new_page()
    sign_in_as(bob_page, live_app, "bob", "bob-pass-1234")
    bob_page.get_by_role("button", name="Away").click()
    expect(bob_page.get_by_role("button", name="Away")).to_have_attribute("aria-pressed", "true")
    alice_page.get_by_role("button", name="Available").click()
    expect(alice_page.get_by_role("button", name="Available")).to_have_attribute(
        "aria-pressed", "true"
    )
    other = named_shopper(live_app, "Hedy Lamarr")
    other.say("Do you sell filter papers?")
    shopper = named_shopper(live_app, "Grace Hopper")
    conversation = shopper.say("My grinder rattles when the burrs turn.")["conversation"]
    pane = open_chat(alice_page, conversation)
    reply(pane, "Sorry to hear that! Bob at our repair desk knows that grinder best.")
    reply(pane, "I am passing you to him now.")
    expect(pane.locator(".msg-agent .receipt").last).to_have_text("Sent")
    bob_page.get_by_role("button", name="Available").click()
    expect(bob_page.get_by_role("button", name="Available")).to_have_attribute(
        "aria-pressed", "true"
    )
    pane.get_by_role("button", name="Transfer").click()
    pane.get_by_label("Transfer to").select_option(label="Bob (available, 0/2)")
    pane.get_by_role("button", name="Transfer chat").click()
    shopper.expect("conversation.assigned")

    bob_pane = open_chat(bob_page, conversation)
    reply(bob_pane, "Hi Grace, Bob here. Does it rattle from the first turn?")
    shopper.expect(
        "message", sender="agent", body="Hi Grace, Bob here. Does it rattle from the first turn?"
    )
    shopper.say("Yes, right away.")
    expect(bob_pane.get_by_text("Yes, right away.")).to_be_visible()
    expect(bob_pane.locator(".msg-colleague .msg-author")).to_have_text(["alice", "alice"])
    expect(bob_pane.locator(".msg-system-text")).to_have_text(
        ["alice joined the chat", "You are now chatting with Bob.", "Bob joined the chat"]
    )
    bob_page.screenshot(path=screenshot_path("dashboard-transfer.png", tmp_path))

    # alice's side: the chat sits under Ended, saying where it went.
    expect(chat_item(alice_page, conversation).locator(".item-wait")).to_have_text(
        "Transferred to Bob"
    )
    expect(alice_page.get_by_role("list", name="Ended").get_by_role("listitem")).to_have_count(1)
    alice_page.screenshot(path=screenshot_path("dashboard-transferred-away.png", tmp_path))
