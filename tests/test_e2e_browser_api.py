"""The widget's JavaScript API on the demo shop in a real browser: the shop's own script
(demo/shop.js) opens the chat from its Help link, identifies its signed-in customer with
the signature its server made, and shows a reply that comes while the chat is closed,
from an on("message") handler; hide and show; and the agent sees the customer verified."""

import re

import pytest
from playwright.sync_api import expect

from chat.conversations import identity
from supportdesk.management.commands.serve_demo import serve_shop
from tests.browser import AgentSocket, LiveApp

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser


def shop_with_a_customer(app: LiveApp, shop) -> dict:
    """The demo shop, with the customer its server signs in (signed with the site's
    identity secret, as `manage.py identity_secret` prints it)."""
    secret = app.manage("identity_secret", "--site", app.site_key).strip().splitlines()[-1]
    customer = {
        "user_id": "kc-customer-7",
        "user_hash": identity.signature(secret, "kc-customer-7"),
        "name": "Ada Lovelace",
        "email": "ada@kettle-crane.example",
    }
    serve_shop(shop, app_url=app.url, site_key=app.site_key, user=customer)
    return customer


def test_the_shop_opens_the_chat_identifies_its_customer_and_hears_a_reply(
    new_context, live_app, shop
):
    shop_with_a_customer(live_app, shop)
    alice = AgentSocket(live_app)
    alice.presence("available")
    page = new_context().new_page()
    page.goto(live_app.shop_url)
    page.get_by_role("link", name="Sign in").click()  # the shop's own sign-in
    expect(page.get_by_role("link", name="Ada Lovelace · Sign out")).to_be_visible()

    page.get_by_role("link", name="Help").click()  # supportdesk.push(["open"])
    frame = page.frame_locator("#supportdesk-frame")
    composer = frame.get_by_role("textbox", name="Write a message")
    composer.fill("Has my order shipped?")
    composer.press("Enter")

    assigned = alice.expect("conversation.assigned")["conversation"]
    context = assigned["visitor_context"]
    assert context["verified"] is True and context["user_id"] == "kc-customer-7"
    assert (context["name"], context["email"]) == ("Ada Lovelace", "ada@kettle-crane.example")

    page.get_by_role("button", name="Close chat").click()
    expect(page.locator("#supportdesk-frame")).to_be_hidden()
    alice.reply(assigned["id"], "Yes, it left this morning.")

    # The shop's on("message") handler put the reply on the page.
    expect(page.locator("#toast")).to_have_text("alice: Yes, it left this morning.")


def test_hide_and_show_take_the_launcher_away_and_back(new_context, live_app):
    page = new_context().new_page()
    page.goto(live_app.shop_url)
    launcher = page.get_by_role("button", name="Open chat")
    expect(launcher).to_be_visible()

    page.evaluate("supportdesk.push(['hide'])")
    expect(launcher).to_be_hidden()
    page.evaluate("supportdesk.push(['show'])")
    expect(launcher).to_be_visible()
    page.evaluate("supportdesk.push(['open'])")
    expect(page.get_by_role("button", name=re.compile("Close chat"))).to_be_visible()
