"""The widget's layout on a desktop and a phone, with screenshots for the README
(`make screenshots` writes them to docs/screenshots/; otherwise they go to tmp)."""

import pytest
from playwright.sync_api import expect

from tests.browser import AgentSocket, screenshot_path

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser


def a_conversation(page, app):
    """The shop with the widget open on a short chat with alice, who is typing."""
    alice = AgentSocket(app)
    alice.presence("available")
    page.goto(app.shop_url)
    page.get_by_role("button", name="Open chat").click()
    frame = page.frame_locator("#supportdesk-frame")
    composer = frame.get_by_role("textbox", name="Write a message")
    composer.fill("Hi! Is the Ethiopia Guji good for espresso?")
    composer.press("Enter")
    conversation = alice.expect("conversation.assigned")["conversation"]["id"]
    alice.send({"type": "read", "conversation": conversation, "seq": 1})
    alice.reply(
        conversation,
        "Hi there! It works beautifully as a light espresso: bright and floral. "
        "Our brew guide: https://example.com/guides/guji",
    )
    composer.fill("Great, and what grind size?")
    composer.press("Enter")
    alice.expect("message", conversation=conversation, body="Great, and what grind size?")
    alice.send({"type": "read", "conversation": conversation, "seq": 3})
    alice.send({"type": "typing", "conversation": conversation, "active": True})
    expect(frame.get_by_text("alice is typing…")).to_be_visible()
    expect(frame.locator(".sd-me .sd-meta").last).to_have_text("Seen")
    return frame


def frame_box(page) -> dict:
    """The widget frame's box once its opening animation (200 ms) has finished: a quick
    chat can be over before it is (seen in CI: y 1.3 px on the phone)."""
    frame = page.locator("#supportdesk-frame")
    frame.evaluate("(f) => Promise.all(f.getAnimations().map((a) => a.finished))")
    return frame.bounding_box()


def test_desktop_screenshot_widget_floats_in_the_corner(new_context, live_app, tmp_path):
    page = new_context(viewport={"width": 1280, "height": 800}).new_page()
    a_conversation(page, live_app)
    box = frame_box(page)
    assert box["width"] == 380
    assert box["x"] + box["width"] == 1280 - 20
    expect(page.get_by_role("button", name="Close chat")).to_be_visible()
    page.screenshot(path=screenshot_path("widget-desktop.png", tmp_path))


def test_mobile_screenshot_widget_fills_the_screen(new_context, live_app, tmp_path):
    page = new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    ).new_page()
    frame = a_conversation(page, live_app)
    box = frame_box(page)
    assert (box["x"], box["y"], box["width"], box["height"]) == (0, 0, 390, 844)
    # Full screen hides the launcher; the frame's own button minimises it.
    expect(page.locator("#supportdesk-launcher")).to_be_hidden()
    expect(frame.get_by_role("button", name="Minimise chat")).to_be_visible()
    page.screenshot(path=screenshot_path("widget-mobile.png", tmp_path))
