"""The agent dashboard's queue view and its ended chats (Debian's Chromium, real
daphne): who waits, how long (counting up), what they wrote; Take where the site allows
it, and a refusal said plainly (taken meanwhile, not allowed, no room); ended chats
apart from the open ones, a transferred one saying to whom.

Every wait is Playwright's auto-waiting `expect` or a frame arriving on a socket.
"""

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.browser import AgentSocket, LiveApp, VisitorSocket
from tests.test_e2e_browser_dashboard import chat_item, open_chat, sign_in
from tests.test_e2e_browser_features import sign_in_as

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser


def allow_picking(app: LiveApp, allowed: bool = True) -> None:
    """The site's "agents may take chats from the queue" setting (admin: Sites → Queue)."""
    app.query("UPDATE chat_site SET agents_pick_from_queue = ?", (allowed,))


def shopper(app: LiveApp, name: str | None = None) -> VisitorSocket:
    visitor = VisitorSocket(app, origin=app.shop_origin)
    if name:
        app.query(
            "UPDATE chat_visitor SET name = ? WHERE id = ?", (name, visitor.ready["visitor"]["id"])
        )
    return visitor


def open_queue(page: Page):
    page.get_by_role("button", name=re.compile("^In queue")).click()
    view = page.get_by_role("region", name="Queue")
    expect(view).to_be_visible()
    return view


def entries(view):
    return view.get_by_role("listitem")


def test_the_queue_view_shows_who_waits_how_long_and_what_they_wrote_and_take_opens_the_chat(
    new_context, live_app
):
    allow_picking(live_app)
    page = new_context().new_page()
    sign_in(page, live_app)  # away: nothing is routed to alice, she may still pick
    grace = shopper(live_app, "Grace Hopper")
    first = grace.say("My parcel never came")["conversation"]
    shopper(live_app).say("Do you ship to Norway?")
    expect(page.locator("#queue-length")).to_have_text("2")

    view = open_queue(page)
    expect(entries(view)).to_have_count(2)
    top = entries(view).first
    expect(top.locator(".queue-place")).to_have_text("#1")
    expect(top.locator(".queue-name")).to_have_text("Grace Hopper")
    expect(top.locator(".queue-said")).to_have_text("My parcel never came")
    wait = top.locator(".queue-wait")
    expect(wait).to_have_text(re.compile(r"^Waiting \d+s$"))
    shown = wait.text_content()
    expect(wait).not_to_have_text(shown)  # it counts up by itself

    # Someone new joins the queue while the view is open: listed without asking.
    shopper(live_app).say("Is the Guji in stock?")
    expect(entries(view)).to_have_count(3)
    expect(entries(view).last.locator(".queue-said")).to_have_text("Is the Guji in stock?")

    top.get_by_role("button", name="Take the chat with Grace Hopper").click()
    grace.expect("conversation.assigned")
    pane = page.locator(f'section.pane[data-conversation="{first}"]')
    expect(pane).to_be_visible()
    expect(view).to_be_hidden()
    expect(pane.get_by_text("My parcel never came")).to_be_visible()
    expect(pane.get_by_role("textbox")).to_be_focused()
    expect(page.locator("#queue-length")).to_have_text("2")
    open_queue(page)
    expect(entries(view)).to_have_count(2)


def test_a_refused_take_says_why_taken_meanwhile_not_allowed_or_no_room(new_context, live_app):
    live_app.manage(
        "create_agent", "alice", "--password", live_app.agent_password, "--capacity", "1"
    )
    create_bob(live_app)
    allow_picking(live_app)
    page = new_context().new_page()
    sign_in(page, live_app)
    bob = AgentSocket(live_app, "bob", "bob-pass-1234")  # away too
    taken = shopper(live_app, "Ada").say("First question")["conversation"]
    shopper(live_app, "Grace").say("Second question")
    shopper(live_app, "Hedy").say("Third question")
    view = open_queue(page)
    expect(entries(view)).to_have_count(3)
    alert = view.get_by_role("alert")

    # Taken meanwhile: Bob takes Ada's chat just before alice's click lands.
    ada = entries(view).first.get_by_role("button", name="Take the chat with Ada")
    stale_button = ada.element_handle()
    bob.send({"type": "conversation.take", "conversation": taken})
    bob.expect("conversation.assigned")
    stale_button.evaluate("button => button.click()")
    expect(alert).to_have_text(
        "That chat is no longer waiting: another agent took it, or the visitor left."
    )
    expect(entries(view)).to_have_count(2)

    # Not allowed: the site stopped letting agents pick while alice's view still showed
    # Take (a list the view reads again after the setting changed shows none: the race
    # this click must win is the server's, not the view's).
    grace = entries(view).first.get_by_role("button", name="Take the chat with Grace")
    stale_button = grace.element_handle()
    allow_picking(live_app, False)
    stale_button.evaluate("button => button.click()")
    expect(alert).to_have_text(
        "This site does not let agents take chats from the queue; they are assigned in turn."
    )
    # The list is read again: no Take button where it cannot work.
    expect(entries(view).first).to_contain_text("Assigned in turn")

    # No room: alice (capacity 1) takes Grace's (the view, opened again, offers Take
    # again); Hedy's is one too many.
    allow_picking(live_app)
    view.get_by_role("button", name="Close queue").click()
    view = open_queue(page)
    entries(view).first.get_by_role("button", name="Take the chat with Grace").click()
    expect(page.locator("section.pane:visible")).to_contain_text("Second question")
    view = open_queue(page)
    expect(entries(view)).to_have_count(1)
    entries(view).first.get_by_role("button", name="Take the chat with Hedy").click()
    expect(view.get_by_role("alert")).to_contain_text("You cannot take a chat right now")
    assert live_app.query("SELECT count(*) FROM chat_conversation WHERE status = 'queued'") == [
        (1,)
    ]


def test_sites_that_do_not_allow_picking_show_the_queue_without_take(new_context, live_app):
    page = new_context().new_page()
    sign_in(page, live_app)
    shopper(live_app).say("Hello?")
    view = open_queue(page)
    expect(entries(view)).to_have_count(1)
    expect(entries(view).first).to_contain_text("Assigned in turn")
    expect(view.get_by_role("button", name=re.compile("^Take"))).to_have_count(0)

    results = Axe().run(page)
    serious = [
        (v["id"], [n["target"] for n in v["nodes"]])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == [], results.generate_report()


def create_bob(app: LiveApp) -> None:
    app.manage(
        "create_agent", "bob", "--password", "bob-pass-1234", "--capacity", "2",
        "--display-name", "Bob",
    )  # fmt: skip


def test_ended_chats_sit_apart_and_a_transferred_one_says_to_whom(new_context, live_app):
    create_bob(live_app)
    page = new_context().new_page()
    sign_in_as(page, live_app, "alice", live_app.agent_password)
    bob = AgentSocket(live_app, "bob", "bob-pass-1234")
    staying, leaving = shopper(live_app), shopper(live_app)
    kept = staying.say("Still here")["conversation"]
    moved = leaving.say("Please pass me to Bob")["conversation"]
    expect(page.locator("#chat-list > li")).to_have_count(2)
    bob.presence("available")

    pane = open_chat(page, moved)
    pane.get_by_role("button", name="Transfer").click()
    pane.get_by_label("Transfer to").select_option(label="Bob (available, 0/2)")
    pane.get_by_role("button", name="Transfer chat").click()
    bob.expect("conversation.assigned")

    open_list = page.get_by_role("list", name="Open chats")
    ended = page.get_by_role("list", name="Ended")
    expect(open_list.get_by_role("listitem")).to_have_count(1)
    expect(open_list).to_contain_text("Still here")
    expect(ended.get_by_role("listitem")).to_have_count(1)
    expect(chat_item(page, moved).locator(".item-wait")).to_have_text("Transferred to Bob")
    expect(pane.locator(".pane-sub")).to_contain_text("Transferred to Bob")
    assert kept != moved
