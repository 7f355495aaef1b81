"""Stored XSS, tried from both sides: every payload of tests/data/xss_payloads.txt is
posted by the visitor and by the agent over real sockets, and shown in a real widget (on
the shop's origin) and a real dashboard. Nothing may run: no dialog opens, no payload
sets `__xss` in any window, every message shows literally as text, and the only elements
inside a bubble are links to http(s) URLs.

Also: the visitor token, the widget's only credential, never appears in a URL.
"""

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser import AgentSocket, LiveApp, VisitorSocket, record_dialogs

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser

PAYLOADS = [
    line.strip()
    for line in (Path(__file__).parent / "data" / "xss_payloads.txt")
    .read_text(encoding="utf-8")
    .splitlines()
    if line.strip() and not line.startswith("# ")
]
OPENING = "Hello, I have a question"

# Posting 140 messages in seconds is what this test does, not what it tests.
UNLIMITED = {
    "SUPPORTDESK_VISITOR_BURST": "1000",
    "SUPPORTDESK_VISITOR_RATE": "1000",
    "SUPPORTDESK_AGENT_BURST": "1000",
    "SUPPORTDESK_AGENT_RATE": "1000",
    "SUPPORTDESK_LIMIT_VISITOR_MESSAGES": "",
    "SUPPORTDESK_LIMIT_IP_MESSAGES": "",
}

# Text of each message bubble (the widget's visually hidden "You: " label left out),
# and every element inside bubbles that is not a plain http(s) link or that label.
WIDGET_BUBBLES = """() => {
  const bubbles = [...document.querySelectorAll('.sd-row:not(.sd-greeting) .sd-bubble')];
  const texts = bubbles.map((b) => [...b.childNodes]
    .filter((n) => !(n.classList && n.classList.contains('sd-vh')))
    .map((n) => n.textContent).join(''));
  const foreign = bubbles.flatMap((b) => [...b.querySelectorAll('*')])
    .filter((e) => !(e.matches('span.sd-vh') && e.children.length === 0)
      && !(e.tagName === 'A' && /^https?:$/.test(new URL(e.href).protocol)
           && e.children.length === 0))
    .map((e) => e.outerHTML);
  return {texts, foreign};
}"""
DASHBOARD_BUBBLES = """(pane) => {
  const bubbles = [...pane.querySelectorAll('.msg .bubble')];
  const texts = bubbles.map((b) => b.textContent);
  const foreign = bubbles.flatMap((b) => [...b.querySelectorAll('*')])
    .filter((e) => !(e.tagName === 'A' && /^https?:$/.test(new URL(e.href).protocol)
      && e.children.length === 0))
    .map((e) => e.outerHTML);
  return {texts, foreign};
}"""
# Each window's own flag: the shop page, the widget frame, the dashboard. Payloads set
# it on their own window, or on parent/top from a frame they might have made.
RAN = "() => window.__xss"


def restart_without_rate_limits(app: LiveApp) -> None:
    app.stop()
    app.env.update(UNLIMITED)
    app.start()


def same_visitor_tab(app: LiveApp, token: str) -> VisitorSocket:
    """Another tab of the widget's visitor (its token, the shop's origin), scripted."""
    return VisitorSocket(app, app.shop_origin, token=token, max_size=None)


def open_widget(page: Page, app: LiveApp):
    page.goto(app.shop_url)
    page.get_by_role("button", name="Open chat").click()
    frame = page.frame_locator("#supportdesk-frame")
    expect(frame.get_by_role("log", name="Conversation")).to_be_visible()
    return frame


def widget_window(page: Page):
    return next(f for f in page.frames if "/widget/frame/" in f.url)


def widget_token(page: Page, app: LiveApp) -> str:
    return widget_window(page).evaluate(
        "(key) => JSON.parse(localStorage.getItem(key))", f"supportdesk:{app.site_key}:token"
    )


def write(frame, text: str) -> None:
    composer = frame.get_by_role("textbox", name="Write a message")
    composer.fill(text)
    composer.press("Enter")


def dashboard_signed_in_and_available(page: Page, app: LiveApp) -> None:
    page.goto(app.url + "/agent/")
    page.get_by_label("Username").fill(app.agent_username)
    page.get_by_label("Password").fill(app.agent_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection-text")).to_have_text("Connected")
    page.get_by_role("button", name="Available").click()
    expect(page.get_by_role("button", name="Available")).to_have_attribute("aria-pressed", "true")


def test_the_payload_corpus_is_at_least_fifty_distinct_payloads():
    assert len(PAYLOADS) >= 50
    assert len(set(PAYLOADS)) == len(PAYLOADS)


def test_every_payload_from_either_side_shows_as_inert_text_in_widget_and_dashboard(
    new_context, live_app
):
    restart_without_rate_limits(live_app)
    dashboard = new_context().new_page()
    dashboard_dialogs = record_dialogs(dashboard)
    dashboard_signed_in_and_available(dashboard, live_app)
    shop = new_context().new_page()
    shop_dialogs = record_dialogs(shop)
    console: list[str] = []
    for page in (shop, dashboard):
        page.on("console", lambda message: console.append(message.text))
    widget = open_widget(shop, live_app)
    write(widget, OPENING)
    expect(widget.locator("#sd-title")).to_have_text("alice")

    visitor = same_visitor_tab(live_app, widget_token(shop, live_app))
    agent = AgentSocket(live_app)
    (conversation,) = [c["id"] for c in agent.ready["conversations"]]
    for n, payload in enumerate(PAYLOADS):
        visitor.say(payload, client_msg_id=f"v{n}")
    for payload in PAYLOADS:
        agent.reply(conversation, payload)

    expected = [OPENING, *PAYLOADS, *PAYLOADS]
    expect(widget.locator(".sd-row:not(.sd-greeting) .sd-bubble")).to_have_count(len(expected))
    dashboard.locator(f'#chat-list li[data-conversation="{conversation}"]').get_by_role(
        "button"
    ).click()
    pane = dashboard.locator(f'section.pane[data-conversation="{conversation}"]')
    expect(pane.locator(".msg .bubble")).to_have_count(len(expected))

    in_widget = widget_window(shop).evaluate(WIDGET_BUBBLES)
    in_dashboard = pane.evaluate(DASHBOARD_BUBBLES)
    assert in_widget["texts"] == expected
    assert in_dashboard["texts"] == expected
    assert in_widget["foreign"] == []
    assert in_dashboard["foreign"] == []
    assert shop_dialogs == []
    assert dashboard_dialogs == []
    for window in (shop.main_frame, widget_window(shop), dashboard.main_frame):
        assert window.evaluate(RAN) is None, window.url
    # Markup that reached a DOM would have tripped the CSP (inline handlers, javascript:
    # URLs): the browser reports that on the console, and it reported nothing.
    assert [m for m in console if "Content Security Policy" in m] == []
    assert live_app.query("SELECT COUNT(*) FROM chat_message") == [(len(expected),)]


def test_the_widget_never_puts_the_visitor_token_in_a_url(new_context, live_app):
    AgentSocket(live_app).presence("available")  # someone online: the widget offers its composer
    context = new_context()
    shop = context.new_page()
    urls: list[str] = []
    context.on("request", lambda request: urls.append(request.url))
    shop.on("websocket", lambda socket: urls.append(socket.url))
    widget = open_widget(shop, live_app)
    write(widget, "Is my token safe?")
    expect(widget.locator(".sd-me .sd-meta")).to_have_text("Sent")  # the token is stored by then
    token = widget_token(shop, live_app)

    # The chat stays open across the reload and resumes with the stored token.
    shop.reload()
    expect(shop.frame_locator("#supportdesk-frame").locator(".sd-me .sd-bubble")).to_have_count(1)

    assert token and len(token) >= 43
    assert any("/ws/visitor/" in url for url in urls)
    assert any("/api/v1/visitor-sessions" in url for url in urls)
    assert [url for url in urls if token in url] == []
    assert [url for url in urls if json.dumps(token)[1:-1] in url] == []
