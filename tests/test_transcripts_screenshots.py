"""The transcript view and the analytics page in a real browser, over a month of
`seed_demo` data, with screenshots for the docs (`make screenshots-admin` writes them to
docs/screenshots/; otherwise they go to the test's tmp). Both pages run under the
strict CSP: the browser reports no violation and no script error."""

import pytest
from playwright.sync_api import expect

from tests.browser import screenshot_path

pytestmark = pytest.mark.browser
pytest_plugins = ["tests.browser"]

ADMIN = ("admin", "demo-admin-pass")  # what seed_demo creates


@pytest.fixture
def admin_page(new_context, live_app):
    live_app.manage("seed_demo", "--conversations", "1500", "--seed", "4")
    page = new_context(viewport={"width": 1280, "height": 900}).new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.goto(live_app.url + "/admin/login/")
    page.get_by_label("Username").fill(ADMIN[0])
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    # More room for the content: fold the admin's navigation sidebar away (the browser
    # remembers it for the next pages).
    page.goto(live_app.url + "/admin/chat/conversation/")
    page.locator("#toggle-nav-sidebar").click()
    expect(page.locator("#nav-sidebar")).to_be_hidden()
    page.problems = problems
    return page


def test_analytics_screenshot_shows_charts_and_tables(admin_page, live_app, tmp_path):
    page = admin_page

    page.goto(live_app.url + "/admin/analytics/")

    expect(page.get_by_role("heading", name="Support analytics")).to_be_visible()
    expect(page.locator(".sd-kpi .sd-number").first).to_have_text("1,500")
    expect(page.get_by_role("img", name="Chats per day")).to_be_visible()
    expect(page.get_by_role("img", name="Chats by hour started")).to_be_visible()
    expect(page.get_by_role("img", name="Ratings")).to_be_visible()
    agents = page.locator("section", has=page.get_by_role("heading", name="Per agent"))
    expect(agents.locator("tbody tr")).to_have_count(4)
    # A bar's tooltip is its numbers in words.
    expect(page.locator(".sd-bar title").first).to_contain_text("chats")
    assert page.problems == []
    page.screenshot(path=screenshot_path("admin-analytics.png", tmp_path), full_page=True)


def test_transcript_screenshot_reads_like_the_chat(admin_page, live_app, tmp_path):
    page = admin_page
    ((conversation,),) = live_app.query(
        """SELECT c.id FROM chat_conversation c
           JOIN chat_visitor v ON v.id = c.visitor_id
           JOIN chat_conversationrating r ON r.conversation_id = c.id
           JOIN chat_note n ON n.conversation_id = c.id
           WHERE v.name != '' AND v.email != '' AND r.comment != '' AND c.last_seq >= 6
           ORDER BY c.id DESC LIMIT 1"""
    )

    page.goto(f"{live_app.url}/admin/chat/conversation/{conversation}/change/")

    chat = page.locator(".sd-chat")
    expect(chat.locator(".sd-from-visitor").first).to_be_visible()
    expect(chat.locator(".sd-from-agent").first).to_be_visible()
    expect(chat.locator(".sd-event", has_text="Assigned to")).to_be_visible()
    expect(chat.locator(".sd-rating")).to_contain_text("/5")
    expect(chat.locator(".sd-note")).to_contain_text("Internal note")
    visitor_box = chat.locator(".sd-from-visitor").first.bounding_box()
    agent_box = chat.locator(".sd-from-agent").first.bounding_box()
    assert visitor_box["x"] < agent_box["x"]  # the visitor on the left, the agent right
    assert page.problems == []
    page.screenshot(path=screenshot_path("admin-transcript.png", tmp_path), full_page=True)
