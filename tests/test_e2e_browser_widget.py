"""The widget in a real browser: a shop on another origin embeds it, a visitor chats with a
scripted agent on a real socket, and the promises hold: queue positions, typing, "Seen",
reload and offline resume, refusal on foreign origins, inert markup, accessibility."""

import io
import json
import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from PIL import Image
from playwright.sync_api import expect

from tests.browser import AgentSocket, LiveApp, VisitorSocket, record_dialogs

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser


def open_widget(page, app: LiveApp):
    """The shop page with the widget opened from its launcher; the chat frame."""
    page.goto(app.shop_url)
    page.get_by_role("button", name="Open chat").click()
    frame = page.frame_locator("#supportdesk-frame")
    expect(frame.get_by_role("log", name="Conversation")).to_be_visible()
    return frame


def write(frame, text: str) -> None:
    composer = frame.get_by_role("textbox", name="Write a message")
    composer.fill(text)
    composer.press("Enter")


def own_bubbles(frame):
    return frame.locator(".sd-me .sd-bubble")


def agent_bubbles(frame):
    return frame.locator(".sd-them:not(.sd-greeting) .sd-bubble")


def chat_with_alice(page, app: LiveApp, first: str):
    """Alice available, the visitor opens the widget and writes: (frame, alice, conv id)."""
    alice = AgentSocket(app)
    alice.presence("available")
    frame = open_widget(page, app)
    write(frame, first)
    conversation = alice.expect("conversation.assigned")["conversation"]["id"]
    expect(frame.locator("#sd-title")).to_have_text("alice")
    return frame, alice, conversation


def test_visitor_on_the_shop_chats_with_alice_and_both_see_typing_and_seen(new_context, live_app):
    page = new_context().new_page()
    alice = AgentSocket(live_app)
    alice.presence("available")
    frame = open_widget(page, live_app)
    # The frame comes from the app, the page from the shop: two origins.
    assert page.url.startswith(live_app.shop_origin)
    assert page.locator("#supportdesk-frame").get_attribute("src").startswith(live_app.url)

    composer = frame.get_by_role("textbox", name="Write a message")
    composer.fill("Hi! Where is my order?")
    composer.press("Shift+Enter")  # a new line, not a send
    composer.press_sequentially("It's #1042.")
    composer.press("Enter")

    assigned = alice.expect("conversation.assigned")
    conversation = assigned["conversation"]["id"]
    assert [m["body"] for m in assigned["conversation"]["messages"]] == [
        "Hi! Where is my order?\nIt's #1042."
    ]
    expect(frame.locator("#sd-title")).to_have_text("alice")
    expect(frame.get_by_role("log").get_by_text("alice joined the chat")).to_be_visible()
    expect(frame.locator(".sd-me .sd-meta")).to_have_text("Sent")

    composer.press_sequentially("Also")
    alice.expect("typing", conversation=conversation, from_="visitor", active=True)

    alice.send({"type": "read", "conversation": conversation, "seq": 1})
    expect(frame.locator(".sd-me .sd-meta")).to_have_text("Seen")

    alice.send({"type": "typing", "conversation": conversation, "active": True})
    expect(frame.get_by_text("alice is typing…")).to_be_visible()
    alice.reply(conversation, "Let me check that for you.")
    expect(agent_bubbles(frame)).to_have_text(["alice: Let me check that for you."])
    expect(frame.get_by_text("alice is typing…")).to_be_hidden()
    # The widget is open, so the visitor has read the answer, and alice hears so.
    alice.expect("read", conversation=conversation, by="visitor", seq=2)


def test_queued_visitor_sees_position_move_up_then_alice_takes_the_chat(new_context, live_app):
    alice = AgentSocket(live_app)
    alice.presence("available")
    busy = []
    for n in range(2):  # alice's two slots are taken
        VisitorSocket(live_app, origin=live_app.shop_origin).say(f"Hello, I am shopper {n}")
        busy.append(alice.expect("conversation.assigned")["conversation"]["id"])
    first_in_line = VisitorSocket(live_app, origin=live_app.shop_origin)
    first_in_line.say("Hello? (first in line)")
    first_in_line.expect("conversation.queued", position=1)

    page = new_context().new_page()
    frame = open_widget(page, live_app)
    write(frame, "Is anyone there?")
    status = frame.locator("#sd-status")
    # A chat takes 5 minutes until the site has closed chats: 5 min x 2nd / 2 slots.
    expect(status).to_have_text("You are number 2 in line — about 5 min")

    first_in_line.send({"type": "conversation.close"})
    expect(status).to_have_text("You are number 1 in line — about 3 min")

    alice.send({"type": "conversation.close", "conversation": busy[0]})
    assigned = alice.expect("conversation.assigned")
    assert [m["body"] for m in assigned["conversation"]["messages"]] == ["Is anyone there?"]
    expect(frame.locator("#sd-title")).to_have_text("alice")
    expect(status).to_have_text("Support at Kettle & Crane")


def test_reload_mid_chat_shows_the_whole_history_once(new_context, live_app):
    page = new_context().new_page()
    frame, alice, conversation = chat_with_alice(page, live_app, "Do you ship to Norway?")
    alice.reply(conversation, "Yes, in 3-5 days.")
    expect(agent_bubbles(frame)).to_have_count(1)
    write(frame, "Great, thanks!")
    expect(own_bubbles(frame).last.locator("xpath=..").locator(".sd-meta")).to_have_text("Sent")

    page.reload()
    # Still open after the reload (same tab), and the history is there exactly once.
    frame = page.frame_locator("#supportdesk-frame")
    expect(frame.locator(".sd-row:not(.sd-greeting) .sd-bubble")).to_have_text(
        ["You: Do you ship to Norway?", "alice: Yes, in 3-5 days.", "You: Great, thanks!"]
    )
    expect(frame.locator("#sd-title")).to_have_text("alice")


def test_message_typed_offline_arrives_once_when_back_online(new_context, live_app):
    context = new_context()
    page = context.new_page()
    frame, alice, conversation = chat_with_alice(page, live_app, "My grinder is broken.")

    context.set_offline(True)
    expect(frame.get_by_text("You are offline.", exact=False)).to_be_visible()
    write(frame, "Sent while offline")
    pending = frame.locator(".sd-me").last.locator(".sd-meta")
    expect(pending).to_have_text("Waiting for connection…")

    context.set_offline(False)
    expect(pending).to_have_text("Sent")
    alice.expect("message", conversation=conversation, body="Sent while offline")
    # A later message proves the socket delivered everything before it.
    write(frame, "And this one after")
    alice.expect("message", conversation=conversation, body="And this one after")
    assert len(alice.received("message", body="Sent while offline")) == 1
    assert live_app.query(
        "SELECT count(*) FROM chat_message WHERE body = ?", ("Sent while offline",)
    ) == [(1,)]
    expect(own_bubbles(frame)).to_have_text(
        ["You: My grinder is broken.", "You: Sent while offline", "You: And this one after"]
    )


def test_widget_reconnects_after_a_server_restart_and_resumes_without_gaps(new_context, live_app):
    page = new_context().new_page()
    frame, alice, conversation = chat_with_alice(page, live_app, "Is my parcel insured?")
    alice.reply(conversation, "Yes, up to 100 euros.")
    expect(agent_bubbles(frame)).to_have_count(1)

    live_app.stop()
    expect(frame.get_by_text("Connection lost. Reconnecting…")).to_be_visible()
    write(frame, "Typed while the server was down")
    pending = frame.locator(".sd-me").last.locator(".sd-meta")
    expect(pending).to_have_text("Waiting for connection…")

    live_app.start()  # backoff brings the widget back on its own
    expect(pending).to_have_text("Sent")
    expect(frame.get_by_text("Connection lost. Reconnecting…")).to_be_hidden()
    alice = AgentSocket(live_app)
    alice.reply(conversation, "Back again: anything else?")
    expect(frame.locator(".sd-row:not(.sd-greeting) .sd-bubble")).to_have_text(
        [
            "You: Is my parcel insured?",
            "alice: Yes, up to 100 euros.",
            "You: Typed while the server was down",
            "alice: Back again: anything else?",
        ]
    )
    assert live_app.query(
        "SELECT count(*) FROM chat_message WHERE body = ?", ("Typed while the server was down",)
    ) == [(1,)]


def test_failed_send_is_retried_with_the_same_client_msg_id(new_context, live_app):
    page = new_context().new_page()
    sent_ids: list[str] = []
    refused: list[str] = []

    def relay(ws) -> None:
        server = ws.connect_to_server()

        def from_page(message) -> None:
            frame = json.loads(message)
            if frame.get("type") == "message.send":
                sent_ids.append(frame["client_msg_id"])
                if frame["body"] == "Refused once" and not refused:
                    # The server's answer when it cannot store: worth a retry.
                    refused.append(frame["client_msg_id"])
                    ws.send(
                        '{"type":"error","code":"unavailable","detail":"try again",'
                        f'"client_msg_id":"{frame["client_msg_id"]}"}}'
                    )
                    return
            server.send(message)

        ws.on_message(from_page)

    page.route_web_socket(re.compile(r".*/ws/visitor/$"), relay)
    alice = AgentSocket(live_app)
    alice.presence("available")
    frame = open_widget(page, live_app)
    write(frame, "Hello")
    # The relay runs only while Playwright is being called: wait in the page, not on
    # alice's socket, until "Hello" went through it.
    expect(frame.locator(".sd-me .sd-meta")).to_have_text("Sent")
    conversation = alice.expect("conversation.assigned")["conversation"]["id"]

    write(frame, "Refused once")
    meta = frame.locator(".sd-me").last.locator(".sd-meta")
    expect(meta).to_contain_text("Not sent")
    meta.get_by_role("button", name="Retry").click()
    expect(meta).to_have_text("Sent")

    alice.expect("message", conversation=conversation, body="Refused once")
    retried = [i for i in sent_ids if i == refused[0]]
    assert len(retried) == 2, sent_ids
    assert live_app.query(
        "SELECT count(*) FROM chat_message WHERE client_msg_id = ?", (refused[0],)
    ) == [(1,)]


def test_unread_badge_counts_agent_messages_while_the_widget_is_closed(new_context, live_app):
    page = new_context().new_page()
    frame, alice, conversation = chat_with_alice(page, live_app, "Quick question")
    launcher = page.locator("#supportdesk-launcher")
    launcher.click()  # close
    expect(page.locator("#supportdesk-frame")).to_be_hidden()

    alice.reply(conversation, "Sure, go ahead.")
    alice.reply(conversation, "Are you still there?")
    expect(launcher).to_have_accessible_name("Open chat, 2 unread")
    expect(launcher.locator("span")).to_have_text("2")

    launcher.click()
    expect(launcher).to_have_accessible_name("Close chat")
    expect(agent_bubbles(frame)).to_have_count(2)
    alice.expect("read", conversation=conversation, by="visitor", seq=3)


def test_agent_closing_the_chat_lets_the_visitor_start_a_new_one(new_context, live_app):
    page = new_context().new_page()
    frame, alice, conversation = chat_with_alice(page, live_app, "Thanks for the help")
    alice.send({"type": "conversation.close", "conversation": conversation})
    expect(frame.get_by_text("alice ended the chat.")).to_be_visible()
    expect(frame.locator("#sd-status")).to_have_text("This chat has ended")

    frame.get_by_role("button", name="Start a new chat").click()
    expect(frame.locator(".sd-row:not(.sd-greeting)")).to_have_count(0)
    expect(frame.locator("#sd-status")).to_have_text(
        "Agents online — we typically reply in a few minutes"
    )
    write(frame, "One more thing")
    second = alice.expect("conversation.assigned")["conversation"]
    assert second["id"] != conversation
    assert [m["body"] for m in second["messages"]] == ["One more thing"]
    expect(own_bubbles(frame)).to_have_text(["You: One more thing"])


def test_visitor_ends_the_chat_and_alice_is_told(new_context, live_app):
    page = new_context().new_page()
    frame, alice, conversation = chat_with_alice(page, live_app, "That's all, thanks")
    frame.get_by_role("button", name="End chat").click()
    alice.expect("conversation.closed", conversation=conversation, by="visitor")
    expect(frame.get_by_text("You ended the chat.")).to_be_visible()
    expect(frame.get_by_role("button", name="End chat")).to_be_hidden()


def test_a_page_on_an_origin_the_site_does_not_allow_cannot_load_the_frame(new_context, evil):
    page = new_context().new_page()
    with (
        page.expect_event("requestfailed", lambda r: "/widget/frame/" in r.url) as framing,
        page.expect_event("requestfailed", lambda r: "/widget/config/" in r.url),
    ):
        page.goto(evil.origin + "/")
    # The browser refused to render the frame (CSP frame-ancestors)...
    assert framing.value.failure == "net::ERR_BLOCKED_BY_RESPONSE"
    stolen = page.frame(name="stolen")
    assert stolen.url.startswith("chrome-error://")
    assert stolen.locator("#sd-log").count() == 0
    # ...and the copied embed tag got no launcher: the config is not for this origin.
    assert page.locator("#supportdesk-launcher").count() == 0


def test_markup_and_javascript_links_from_the_agent_render_as_inert_text(new_context, live_app):
    page = new_context().new_page()
    dialogs = record_dialogs(page)
    frame, alice, conversation = chat_with_alice(page, live_app, "<img src=x onerror=alert(1)>")
    payloads = [
        "<img src=x onerror=alert(1)>",
        "<script>alert(1)</script>",
        "javascript:alert(1)",
        "Tracking: https://example.com/track?id=1&x=<b>.",
    ]
    for body in payloads:
        alice.reply(conversation, body)
    expect(agent_bubbles(frame)).to_have_text([f"alice: {body}" for body in payloads])
    expect(own_bubbles(frame)).to_have_text(["You: <img src=x onerror=alert(1)>"])

    log = frame.locator("#sd-log")
    expect(log.locator("img, script")).to_have_count(0)
    links = log.locator("a")
    expect(links).to_have_count(1)  # only the https URL became a link
    expect(links).to_have_attribute("href", "https://example.com/track?id=1&x=")
    expect(links).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(links).to_have_attribute("target", "_blank")
    assert dialogs == []


def test_launcher_and_composer_work_from_the_keyboard(new_context, live_app):
    AgentSocket(live_app).presence("available")  # someone online: the widget offers its composer
    page = new_context().new_page()
    page.goto(live_app.shop_url)
    launcher = page.get_by_role("button", name="Open chat")
    expect(launcher).to_be_visible()  # the loader adds it once the config arrives
    page.get_by_role("link", name="Shop this week's roasts").focus()
    page.keyboard.press("Tab")
    expect(launcher).to_be_focused()
    # A visible focus ring even on a host page we do not style.
    assert "6px" in launcher.evaluate("b => getComputedStyle(b).boxShadow")

    page.keyboard.press("Enter")
    frame = page.frame_locator("#supportdesk-frame")
    composer = frame.get_by_role("textbox", name="Write a message")
    expect(composer).to_be_focused()
    expect(page.locator("#supportdesk-launcher")).to_have_attribute("aria-expanded", "true")

    page.keyboard.press("Escape")
    expect(page.locator("#supportdesk-frame")).to_be_hidden()
    expect(page.get_by_role("button", name="Open chat")).to_be_focused()


def serious_or_critical(results) -> list[dict]:
    return [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def test_widget_has_no_serious_or_critical_accessibility_violations(new_context, live_app):
    page = new_context().new_page()
    frame, alice, conversation = chat_with_alice(page, live_app, "Can I change my address?")
    alice.reply(conversation, "Of course, see https://example.com/account")
    alice.send({"type": "typing", "conversation": conversation, "active": True})
    expect(frame.get_by_text("alice is typing…")).to_be_visible()
    chat = page.frame(url=re.compile(r".*/widget/frame/.*"))

    launcher = Axe().run(page, context={"include": [["#supportdesk-launcher"]]})
    assert serious_or_critical(launcher) == [], launcher.generate_report()
    during = Axe().run(chat)
    assert serious_or_critical(during) == [], during.generate_report()

    alice.send({"type": "conversation.close", "conversation": conversation})
    expect(frame.get_by_role("button", name="Start a new chat")).to_be_visible()
    ended = Axe().run(chat)
    assert serious_or_critical(ended) == [], ended.generate_report()


@pytest.mark.parametrize(("motion", "animation"), [("reduce", "none"), ("no-preference", "sd-in")])
def test_new_messages_slide_in_unless_the_visitor_prefers_reduced_motion(
    new_context, live_app, motion, animation
):
    AgentSocket(live_app).presence("available")
    page = new_context(reduced_motion=motion).new_page()
    frame = open_widget(page, live_app)
    write(frame, "Hello")
    row = frame.locator(".sd-me").first
    expect(row).to_be_visible()
    assert row.evaluate("r => getComputedStyle(r).animationName") == animation


# --- issue 16: what a newcomer saw wrong ---------------------------------------------


@pytest.fixture
def media_root(tmp_path, monkeypatch):
    """Where the app stores uploads (set before the app starts)."""
    path = tmp_path / "media"
    monkeypatch.setenv("MEDIA_ROOT", str(path))
    return path


def log_lines(frame):
    """The log line by line: each bubble (with its author for screen readers) and each
    line between them ("alice joined the chat", system messages)."""
    return frame.locator("#sd-log > .sd-sys, #sd-log > .sd-row:not(.sd-greeting) > .sd-bubble")


def test_after_a_transfer_each_reply_keeps_its_author_and_each_join_its_place(
    new_context, live_app
):
    live_app.manage(
        "create_agent", "bob", "--password", "bob-pass-1234", "--capacity", "1",
        "--display-name", "Bob",
    )  # fmt: skip
    page = new_context().new_page()
    frame, alice, conversation = chat_with_alice(page, live_app, "Can I return a grinder?")
    alice.reply(conversation, "Yes, within 30 days.")
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
    bob.reply(conversation, "Bob here: the label is on its way.")
    history = [
        "You: Can I return a grinder?",
        "alice joined the chat",
        "alice: Yes, within 30 days.",
        "You are now chatting with Bob.",
        "Bob joined the chat",
        "Bob: Bob here: the label is on its way.",
    ]
    expect(log_lines(frame)).to_have_text(history)

    page.reload()
    frame = page.frame_locator("#supportdesk-frame")
    expect(frame.locator("#sd-title")).to_have_text("Bob")
    expect(log_lines(frame)).to_have_text(history)
    # Each run of replies shows its author above it.
    expect(frame.locator(".sd-by:visible")).to_have_text(["alice", "Bob"])

    # A reconnect resumes after the last message: the joins are not repeated.
    live_app.stop()
    expect(frame.get_by_text("Connection lost. Reconnecting…")).to_be_visible()
    live_app.start()
    expect(frame.get_by_text("Connection lost. Reconnecting…")).to_be_hidden()
    expect(log_lines(frame)).to_have_text(history)


def test_the_log_stays_at_the_bottom_when_an_image_finishes_loading(
    media_root, new_context, live_app, tmp_path
):
    page = new_context().new_page()
    frame, alice, conversation = chat_with_alice(page, live_app, "My kettle arrived dented")
    for n in range(10):
        alice.reply(conversation, f"Question {n}: could you tell me a little more about it?")
    expect(agent_bubbles(frame)).to_have_count(10)
    picture = io.BytesIO()
    Image.new("RGB", (800, 600), (58, 96, 120)).save(picture, "PNG")
    (tmp_path / "dent.png").write_bytes(picture.getvalue())
    with page.expect_file_chooser() as chooser:
        frame.get_by_role("button", name="Attach a file").click()
    chooser.value.set_files(str(tmp_path / "dent.png"))
    expect(frame.locator(".sd-me img.sd-thumb")).to_be_visible()
    chat = page.frame(url=re.compile(r".*/widget/frame/.*"))
    # Once the thumbnail has decoded and grown the log, the log is scrolled to its end.
    chat.wait_for_function(
        """() => {
          const log = document.getElementById('sd-log');
          const img = log.querySelector('.sd-me img.sd-thumb');
          return img && img.complete && img.naturalWidth > 0
            && log.scrollHeight - log.scrollTop - log.clientHeight < 2;
        }"""
    )


def test_a_queued_visitor_reads_one_wording_for_the_wait_and_it_follows_the_estimate(
    new_context, live_app
):
    # A chat takes a minute until the site has closed chats to learn from.
    live_app.manage(
        "shell", "-c", "from chat.models import Site; Site.objects.update(typical_chat_minutes=1)"
    )
    alice = AgentSocket(live_app)
    alice.presence("available")
    for n in range(2):  # alice's two slots are taken
        VisitorSocket(live_app, origin=live_app.shop_origin).say(f"Hello, I am shopper {n}")
        alice.expect("conversation.assigned")
    frame = open_widget(new_context().new_page(), live_app)
    write(frame, "Is anyone there?")
    status = frame.locator("#sd-status")
    # 1 minute x position 1 / 2 slots = 30 s.
    expect(status).to_have_text("You are number 1 in line — less than a minute")

    # Chats take 8 minutes now: the next sweep tells the waiting visitor again.
    live_app.manage(
        "shell", "-c", "from chat.models import Site; Site.objects.update(typical_chat_minutes=8)"
    )
    expect(status).to_have_text("You are number 1 in line — about 4 min", timeout=20_000)

    # Nobody can take a chat: no estimate, the same words without it.
    alice.presence("away")
    expect(status).to_have_text("You are number 1 in line")


def test_after_the_chat_ends_the_rating_comes_first_and_its_comment_is_full_width(
    new_context, live_app
):
    page = new_context().new_page()
    frame, alice, conversation = chat_with_alice(page, live_app, "Do you sell filters?")
    alice.send({"type": "conversation.close", "conversation": conversation})
    panel = frame.locator(".sd-note")
    rating = panel.get_by_role("group", name="Rate this chat")
    start = panel.get_by_role("button", name="Start a new chat")
    expect(rating).to_be_visible()
    expect(start).to_be_visible()
    assert rating.bounding_box()["y"] < start.bounding_box()["y"]
    comment = panel.get_by_label("Comment (optional)")
    email = panel.get_by_role("textbox", name="Email me the transcript")
    assert abs(comment.bounding_box()["width"] - email.bounding_box()["width"]) < 1
    assert comment.bounding_box()["width"] > 0.9 * panel.bounding_box()["width"]
