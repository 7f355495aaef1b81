"""The issue-8 features as a person sees them, with screenshots for the README
(`make screenshots` writes them to docs/screenshots/; otherwise they go to tmp).

Each test first checks that the page shows what its picture is meant to show (the
panel, the list, the thumbnail, the wait, the form), then takes the picture. Widget
states are shot as the chat frame alone; dashboard states as the whole window.
"""

import io

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from chat.management.commands.seed_demo import DEMO_CANNED_RESPONSES
from tests.browser import AgentSocket, LiveApp, VisitorSocket, screenshot_path
from tests.test_e2e_browser_dashboard import chat_item, open_chat, signed_in_and_available
from tests.test_e2e_browser_widget import (
    agent_bubbles,
    chat_with_alice,
    log_lines,
    open_widget,
    write,
)

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser

SHOP_TITLE = "Kettle & Crane · Coffee roasters"
# A desktop visitor's browser, rather than the test's headless one.
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
HELLO, HOURS = DEMO_CANNED_RESPONSES["hello"], DEMO_CANNED_RESPONSES["hours"]


@pytest.fixture
def media_root(tmp_path, monkeypatch):
    """Where the app stores uploads (set before the app starts)."""
    path = tmp_path / "media"
    monkeypatch.setenv("MEDIA_ROOT", str(path))
    return path


def shell(app: LiveApp, code: str) -> None:
    app.manage("shell", "-c", code)


def demo_canned_responses(app: LiveApp) -> None:
    """The shared snippets `make run` gives its demo agent (seed_demo)."""
    shell(
        app,
        "from agents.models import CannedResponse;"
        "from chat.management.commands.seed_demo import DEMO_CANNED_RESPONSES as texts;"
        "[CannedResponse.objects.create(shortcut=s, body=b) for s, b in texts.items()]",
    )


def frame_shot(page, name: str, tmp_path) -> None:
    """The chat frame alone: the widget as the visitor sees it."""
    page.locator("#supportdesk-frame").screenshot(path=screenshot_path(name, tmp_path))


def loaded(page_or_frame, image) -> None:
    """Wait until an <img> has decoded (a screenshot taken earlier shows a blank box)."""
    page_or_frame.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )


def kettle_photo(path):
    """A small picture that reads as a photo of a dented kettle at thumbnail size."""
    image = Image.new("RGB", (800, 600), (236, 229, 218))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 430, 800, 600), fill=(160, 120, 84))  # the table
    draw.ellipse((230, 170, 570, 500), fill=(58, 96, 120))  # the body
    draw.rectangle((330, 120, 470, 190), fill=(58, 96, 120))  # the lid
    draw.ellipse((375, 90, 425, 130), fill=(30, 30, 30))  # the knob
    draw.arc((520, 210, 680, 420), 270, 90, fill=(30, 30, 30), width=22)  # the handle
    draw.polygon([(250, 300), (120, 220), (140, 250), (255, 350)], fill=(58, 96, 120))
    draw.ellipse((420, 300, 500, 370), fill=(36, 66, 86))  # the dent
    out = io.BytesIO()
    image.save(out, "PNG")
    path.write_bytes(out.getvalue())
    return path


# --- the dashboard ---------------------------------------------------------------------


def test_dashboard_screenshot_visitor_panel_and_canned_suggestions(new_context, live_app, tmp_path):
    demo_canned_responses(live_app)
    dashboard = new_context().new_page()
    signed_in_and_available(dashboard, live_app)
    shopper = new_context(timezone_id="Europe/Oslo", user_agent=WINDOWS_CHROME).new_page()
    frame = open_widget(shopper, live_app)

    # An earlier chat, ended by the visitor, then today's.
    write(frame, "Do you ship to Norway?")
    expect(dashboard.locator("#chat-list li")).to_have_count(1)
    frame.get_by_role("button", name="End chat").click()
    frame.get_by_role("button", name="Start a new chat").click()
    write(frame, "Hello! Which grinder would you pick for a moka pot?")
    expect(dashboard.locator(".chat-list li")).to_have_count(2)
    conversation = live_app.query("SELECT max(id) FROM chat_conversation")[0][0]
    expect(chat_item(dashboard, conversation)).to_be_visible()
    pane = open_chat(dashboard, conversation)
    expect(pane.get_by_text("Which grinder would you pick for a moka pot?")).to_be_visible()

    expect(pane.get_by_role("region", name="About the visitor")).to_be_visible()
    expect(pane.locator(".visitor-page a")).to_have_text(SHOP_TITLE)
    expect(pane.locator(".visitor-browser")).to_have_text("Chrome 131 on Windows 10")
    expect(pane.locator(".visitor-time")).to_contain_text("(Europe/Oslo)")
    expect(pane.locator(".visitor-previous-count")).to_have_text("1 earlier chat")
    expect(pane.get_by_role("button", name="Do you ship to Norway?")).to_be_visible()

    composer = pane.get_by_role("textbox")
    composer.press_sequentially("/h")
    suggestions = pane.get_by_role("listbox", name="Canned responses")
    expect(suggestions).to_be_visible()
    expect(suggestions.get_by_role("option")).to_have_text(["/hello" + HELLO, "/hours" + HOURS])
    expect(suggestions.get_by_role("option").first).to_have_attribute("aria-selected", "true")
    dashboard.screenshot(path=screenshot_path("dashboard-visitor-canned.png", tmp_path))


# --- attachments, both sides -----------------------------------------------------------


def test_attachment_screenshot_photo_thumbnail_in_the_widget_and_the_dashboard(
    media_root, new_context, live_app, tmp_path
):
    dashboard = new_context().new_page()
    signed_in_and_available(dashboard, live_app)
    shopper = new_context().new_page()
    frame = open_widget(shopper, live_app)
    write(frame, "My kettle arrived with a dent, see the photo")
    expect(dashboard.locator("#chat-list li")).to_have_count(1)
    conversation = live_app.query("SELECT max(id) FROM chat_conversation")[0][0]
    pane = open_chat(dashboard, conversation)
    expect(pane.get_by_text("My kettle arrived with a dent")).to_be_visible()

    with shopper.expect_file_chooser() as chooser:
        frame.get_by_role("button", name="Attach a file").click()
    chooser.value.set_files(str(kettle_photo(tmp_path / "kettle.png")))

    thumb = pane.locator("img.file-thumb")
    expect(thumb).to_have_attribute("alt", "kettle.png")
    loaded(dashboard, thumb)
    reply = pane.get_by_role("textbox")
    reply.fill("Sorry about that! A new kettle goes out today; keep the dented one.")
    reply.press("Enter")
    expect(agent_bubbles(frame).last).to_contain_text("A new kettle goes out today")

    own_thumb = frame.locator(".sd-me img.sd-thumb")
    expect(own_thumb).to_be_visible()
    loaded(shopper.locator("#supportdesk-frame").element_handle().content_frame(), own_thumb)
    expect(frame.locator("#sd-upload")).to_be_hidden()
    expect(own_thumb).to_be_in_viewport()
    frame_shot(shopper, "widget-attachment.png", tmp_path)
    # Folded away, the visitor sidebar leaves the whole width to the chat.
    pane.get_by_role("button", name="About the visitor").click()
    expect(pane.locator(".visitor-facts")).to_be_hidden()
    expect(thumb).to_be_in_viewport()
    expect(pane.locator(".msg-agent .bubble").last).to_be_in_viewport()
    dashboard.screenshot(path=screenshot_path("dashboard-attachment.png", tmp_path))


# --- widget states ---------------------------------------------------------------------


def test_queue_screenshot_position_and_estimated_wait(new_context, live_app, tmp_path):
    # Earlier chats took alice 8 minutes each: the estimate's basis.
    shell(
        live_app,
        "from datetime import timedelta; from django.utils import timezone;"
        "from chat.models import Conversation, Site, Visitor;"
        "site = Site.objects.get(); now = timezone.now();"
        "[Conversation.objects.create(site=site, visitor=Visitor.objects.create("
        "site=site, token_hash=f'h{n}'), status='closed', assigned_at=now - timedelta("
        "hours=2, minutes=8), closed_at=now - timedelta(hours=2)) for n in range(3)]",
    )
    alice = AgentSocket(live_app)
    alice.presence("available")
    for n in range(2):  # both of alice's slots are taken
        VisitorSocket(live_app, origin=live_app.shop_origin).say(f"Hello, I am shopper {n}")
        alice.expect("conversation.assigned")

    page = new_context().new_page()
    frame = open_widget(page, live_app)
    write(frame, "Hi, can I still change my order?")

    expect(frame.locator("#sd-status")).to_have_text("You are number 1 in line — about 4 min")
    expect(frame.locator(".sd-me .sd-bubble")).to_contain_text("Hi, can I still change my order?")
    frame_shot(page, "widget-queue.png", tmp_path)


def test_offline_screenshot_we_reply_by_email_with_the_offline_form(
    new_context, live_app, tmp_path
):
    # alice exists but is away: nobody can answer now.
    page = new_context().new_page()
    frame = open_widget(page, live_app)

    expect(frame.locator("#sd-status")).to_have_text("We reply by email")
    expect(frame.get_by_text("No one is online right now.")).to_be_visible()
    form = frame.locator("form.sd-offline")
    expect(form).to_be_visible()
    expect(form.get_by_role("button")).to_be_visible()
    frame_shot(page, "widget-offline.png", tmp_path)


def test_end_of_chat_screenshot_rating_and_transcript_by_email(new_context, live_app, tmp_path):
    page = new_context().new_page()
    frame, alice, conversation = chat_with_alice(page, live_app, "Can I pay by invoice?")
    alice.reply(conversation, "Yes, for orders over 100 euros. Choose Invoice at checkout.")
    expect(agent_bubbles(frame)).to_have_count(1)
    alice.send({"type": "conversation.close", "conversation": conversation})

    expect(frame.get_by_text("alice ended the chat.")).to_be_visible()
    expect(frame.locator("#sd-status")).to_have_text("This chat has ended")
    expect(frame.get_by_text("How was this chat?")).to_be_visible()
    stars = frame.get_by_role("group", name="Rate this chat")
    expect(stars.get_by_role("button")).to_have_count(5)
    stars.get_by_role("button", name="5 out of 5").click()
    expect(frame.get_by_role("button", name="Send rating")).to_be_enabled()
    email = frame.get_by_role("textbox", name="Email me the transcript")
    email.fill("dana@example.com")
    expect(frame.get_by_role("button", name="Send transcript")).to_be_visible()
    expect(frame.get_by_role("button", name="Start a new chat")).to_be_visible()
    frame.locator("#sd-log").evaluate("log => { log.scrollTop = log.scrollHeight; }")
    email.blur()
    expect(frame.get_by_role("button", name="Send transcript")).to_be_in_viewport()
    expect(stars).to_be_in_viewport()
    expect(frame.get_by_role("button", name="Start a new chat")).to_be_in_viewport()
    frame_shot(page, "widget-end-of-chat.png", tmp_path)


def test_transfer_screenshot_each_reply_under_its_own_author_after_a_reload(
    new_context, live_app, tmp_path
):
    live_app.manage(
        "create_agent", "bob", "--password", "bob-pass-1234", "--capacity", "1",
        "--display-name", "Bob",
    )  # fmt: skip
    page = new_context().new_page()
    frame, alice, conversation = chat_with_alice(page, live_app, "My grinder rattles.")
    alice.reply(conversation, "Sorry to hear that! Bob at our repair desk knows it best.")
    bob = AgentSocket(live_app, "bob", "bob-pass-1234")
    bob.presence("available")
    alice.send(
        {
            "type": "conversation.transfer",
            "conversation": conversation,
            "to_agent": bob.ready["agent"]["id"],
        }
    )
    bob.expect("conversation.assigned")
    bob.reply(conversation, "Hi, Bob here. Does it start when the burrs turn?")
    write(frame, "Yes, right away.")
    bob.expect("message", conversation=conversation, body="Yes, right away.")
    bob.send({"type": "read", "conversation": conversation, "seq": 5})
    bob.reply(conversation, "Then a burr is loose: a free replacement is on its way.")
    history = [
        "You: My grinder rattles.",
        "alice joined the chat",
        "alice: Sorry to hear that! Bob at our repair desk knows it best.",
        "You are now chatting with Bob.",
        "Bob joined the chat",
        "Bob: Hi, Bob here. Does it start when the burrs turn?",
        "You: Yes, right away.",
        "Bob: Then a burr is loose: a free replacement is on its way.",
    ]
    expect(log_lines(frame)).to_have_text(history)

    # After a reload, as the visitor saw it: each reply keeps its own author.
    page.reload()
    frame = page.frame_locator("#supportdesk-frame")
    expect(log_lines(frame)).to_have_text(history)
    expect(frame.locator(".sd-by:visible")).to_have_text(["alice", "Bob", "Bob"])
    expect(frame.locator("#sd-title")).to_have_text("Bob")
    expect(frame.locator(".sd-me .sd-meta").last).to_have_text("Seen")
    expect(agent_bubbles(frame).last).to_be_in_viewport()
    frame_shot(page, "widget-transfer.png", tmp_path)
