"""Who wrote what, and where the log stands, on the agent dashboard (Debian's Chromium,
real daphne): after alice transfers a chat to Bob, Bob's dashboard shows alice's replies
under alice's name and only his own as "You", with each "joined" line where that turn
began, live and after a reload; and an image that finishes loading leaves the log at
its end.

Every wait is Playwright's auto-waiting `expect` or a frame arriving on a socket.
"""

import io

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser import AgentSocket, VisitorSocket
from tests.test_e2e_browser_dashboard import (
    chat_item,
    chat_pane,
    open_chat,
    reply,
    signed_in_and_available,
)
from tests.test_e2e_browser_features import sign_in_as

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser


def create_bob(app) -> None:
    app.manage(
        "create_agent", "bob", "--password", "bob-pass-1234", "--capacity", "1",
        "--display-name", "Bob",
    )  # fmt: skip


def log_lines(pane):
    """The log line by line: each bubble and each line between them."""
    return pane.locator(".messages > li .bubble, .messages > li .msg-system-text")


def test_after_a_transfer_bob_sees_alices_replies_under_her_name_and_only_his_as_you(
    new_context, live_app
):
    create_bob(live_app)
    bob_page = new_context().new_page()
    sign_in_as(bob_page, live_app, "bob", "bob-pass-1234")
    bob_page.get_by_role("button", name="Away").click()  # the first chat goes to alice
    expect(bob_page.get_by_role("button", name="Away")).to_have_attribute("aria-pressed", "true")
    alice = AgentSocket(live_app)
    alice.presence("available")
    shopper = VisitorSocket(live_app, origin=live_app.shop_origin)
    conversation = shopper.say("Can I return a grinder?")["conversation"]
    alice.expect("conversation.assigned")
    alice.reply(conversation, "Yes, within 30 days.")
    bob_page.get_by_role("button", name="Available").click()
    expect(bob_page.get_by_role("button", name="Available")).to_have_attribute(
        "aria-pressed", "true"
    )
    [(bob_id,)] = live_app.query("SELECT id FROM agents_agentprofile WHERE display_name = 'Bob'")
    alice.send({"type": "conversation.transfer", "conversation": conversation, "to_agent": bob_id})
    shopper.expect("conversation.assigned")

    # The preview names alice, not "You".
    item = chat_item(bob_page, conversation)
    expect(item.locator(".item-preview")).to_have_text("alice: Yes, within 30 days.")
    pane = open_chat(bob_page, conversation)
    reply(pane, "Hi, Bob here: I will send you the label.")
    shopper.expect("message", sender="agent", body="Hi, Bob here: I will send you the label.")

    history = [
        "Can I return a grinder?",
        "alice joined the chat",
        "Yes, within 30 days.",
        "You are now chatting with Bob.",
        "Bob joined the chat",
        "Hi, Bob here: I will send you the label.",
    ]
    for page in (bob_page, None):
        if page is None:  # and again from `ready` and `sync` after a reload
            bob_page.reload()
            expect(bob_page.locator("#connection-text")).to_have_text("Connected")
            pane = open_chat(bob_page, conversation)
        expect(log_lines(pane)).to_have_text(history)
        alices = pane.locator(".msg", has_text="Yes, within 30 days.")
        expect(alices).to_have_class("msg msg-colleague")
        expect(alices.locator(".msg-author")).to_have_text("alice")
        expect(alices.locator(".meta .sr-only")).to_have_text("alice,")
        bobs = pane.locator(".msg", has_text="Hi, Bob here")
        expect(bobs).to_have_class("msg msg-agent")
        expect(bobs.locator(".meta .sr-only")).to_have_text("You,")
        # Only Bob's own reply is on the right.
        assert alices.bounding_box()["x"] < bobs.bounding_box()["x"], (
            "a colleague's reply sits on the visitor's side"
        )
        expect(chat_item(bob_page, conversation).locator(".item-preview")).to_have_text(
            "You: Hi, Bob here: I will send you the label."
        )


def test_the_dashboard_log_ends_at_the_bottom_once_an_image_has_loaded(
    media_root, new_context, live_app, tmp_path
):
    page = new_context(viewport={"width": 1280, "height": 700}).new_page()
    signed_in_and_available(page, live_app)
    shopper = VisitorSocket(live_app, origin=live_app.shop_origin)
    conversation = shopper.say("My kettle arrived dented")["conversation"]
    pane = open_chat(page, conversation)
    for n in range(12):
        reply(pane, f"Question {n}: could you tell me a little more about it?")
    expect(pane.locator(".msg-agent .receipt")).to_have_text([""] * 11 + ["Sent"])

    # The thumbnails answer late, so the acked row is in the log well before its image
    # has a height: only a scroll on the image's load reaches the end.
    held = []
    page.route("**/attachments/*/thumbnail/", lambda route: held.append(route))
    picture = io.BytesIO()
    Image.new("RGB", (800, 600), (58, 96, 120)).save(picture, "PNG")
    (tmp_path / "dent.png").write_bytes(picture.getvalue())
    with page.expect_file_chooser() as chooser:
        pane.get_by_role("button", name="Attach file").click()
    chooser.value.set_files(str(tmp_path / "dent.png"))
    expect(pane.locator(".msg-agent .receipt").last).to_have_text("Sent")
    expect(pane.locator(".messages-pending > li")).to_have_count(0)
    expect(pane.locator(".msg-agent img.file-thumb")).to_have_count(1)
    while not held:  # each call into the page lets Playwright hand over the held request
        page.evaluate("0")
    for route in held:
        route.continue_()
    page.wait_for_function(
        """pane => {
          const log = pane.querySelector('.log');
          const img = log.querySelector('img.file-thumb');
          return img && img.complete && img.naturalWidth > 0
            && log.scrollHeight - log.scrollTop - log.clientHeight < 2;
        }""",
        arg=chat_pane(page, conversation).element_handle(),
    )


@pytest.fixture
def media_root(tmp_path, monkeypatch):
    """Where the app stores uploads (set before the app starts)."""
    path = tmp_path / "media"
    monkeypatch.setenv("MEDIA_ROOT", str(path))
    return path
