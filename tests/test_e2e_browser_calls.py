"""Calls with two real browsers (issue 20's acceptance): alice's dashboard and a shopper's
widget, each in its own Chromium context with fake camera and microphone devices
(`--use-fake-device-for-media-stream --use-fake-ui-for-media-stream`: the devices are
test patterns and the browser's permission prompt says yes by itself).

The call connects and each side's RTCPeerConnection `getStats()` shows inbound audio and
video with packets and frames received growing; hanging up ends it for both; a decline
and an unanswered call (the ring timeout shortened to a few seconds; the 30 s default
is tests/test_services_calls.py's) are shown to the agent. Nothing in the widget asks
for a device before the visitor clicks Accept. A shop page reloaded while a call rings
shows the invitation again and can answer it; the shop tab closing while a call rings
ends it for the agent within seconds, long before the ring timeout.

Every wait is for an event with a deadline (`expect`, `wait_for_function`); nothing sleeps.
"""

import re

import pytest
from playwright.sync_api import Frame, Page, expect

from tests.browser import CHROMIUM, CHROMIUM_ARGS, LiveApp, screenshot_path
from tests.test_e2e_browser_chat import (
    chat_entry,
    dashboard_signed_in_and_available,
    open_chat,
    open_widget,
    write,
)

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser

FAKE_MEDIA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
RING_SECONDS = 6
STATS_TIMEOUT_MS = 15_000

# Before any script of the page (every frame): keep each RTCPeerConnection the page
# makes, and count its requests for camera or microphone, for the test to read.
RECORD_CALLS = """
(() => {
  const Native = window.RTCPeerConnection;
  if (!Native) return;
  window.__peerConnections = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Native(...args);
    window.__peerConnections.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
  window.__mediaRequests = 0;
  const devices = navigator.mediaDevices;
  if (devices) {
    const ask = devices.getUserMedia.bind(devices);
    devices.getUserMedia = (constraints) => {
      window.__mediaRequests += 1;
      return ask(constraints);
    };
  }
})();
"""

# What one side receives, from its newest RTCPeerConnection: per kind, the inbound RTP
# packets and (video) frames received so far.
INBOUND = """
async () => {
  const pc = (window.__peerConnections || []).at(-1);
  if (!pc) return null;
  const seen = {state: pc.connectionState, audio: null, video: null};
  (await pc.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    const frames = s.framesReceived || s.framesDecoded || 0;
    seen[s.kind] = {packets: s.packetsReceived || 0, frames};
  });
  return seen;
}
"""

# getStats() answers with a promise, which wait_for_function does not await: a sampler
# in the page keeps the latest answer in window.__inbound, and the predicate reads that.
SAMPLE = (
    "() => { window.__inbound = null; window.__statsBase = null;"
    " clearInterval(window.__sampler); window.__sampler = setInterval(async () => {"
    f" window.__inbound = await ({INBOUND})(); }}, 200); }}"
)
# The first sample with inbound audio (and video) on a connected connection is the base;
# the answer is {before, after} once packets (audio, video) and frames (video) received
# have all grown past it.
GROWN = (
    "(video) => {"
    " const now = window.__inbound;"
    " if (!now || now.state !== 'connected' || !now.audio || (video && !now.video)) return false;"
    " const base = window.__statsBase;"
    " if (!base) { window.__statsBase = now; return false; }"
    " const grew = now.audio.packets > base.audio.packets && (!video"
    "   || (now.video.packets > base.video.packets && now.video.frames > base.video.frames));"
    " return grew ? {before: base, after: now} : false; }"
)

CONNECTED = (
    "() => { const pc = (window.__peerConnections || []).at(-1);"
    " return !!pc && pc.connectionState === 'connected'; }"
)
CLOSED = (
    "() => { const pc = (window.__peerConnections || []).at(-1);"
    " return !!pc && pc.connectionState === 'closed'; }"
)


@pytest.fixture(scope="module")
def media_chromium(chromium):
    """Another Chromium of the same Playwright, launched with fake media devices."""
    browser = chromium.browser_type.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *FAKE_MEDIA]
    )
    yield browser
    browser.close()


@pytest.fixture
def media_context(media_chromium):
    contexts = []

    def make():
        context = media_chromium.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(RECORD_CALLS)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def widget_frame(page: Page) -> Frame:
    """The chat frame as a Playwright Frame (for evaluate): the loader's iframe."""
    return page.frame_locator("#supportdesk-frame").owner.element_handle().content_frame()


def expect_media_flowing(where, *, video: bool) -> dict:
    """Wait until this side is connected and its inbound audio (and video) grows; the
    two samples that show it."""
    where.wait_for_function(CONNECTED, timeout=STATS_TIMEOUT_MS)
    where.evaluate(SAMPLE)
    grown = where.wait_for_function(GROWN, arg=video, timeout=STATS_TIMEOUT_MS, polling=100)
    where.evaluate("clearInterval(window.__sampler)")
    return grown.json_value()


def test_a_video_call_connects_both_ways_then_a_decline_and_a_timeout_reach_the_agent_screenshots(
    media_context, live_app: LiveApp, tmp_path
):
    live_app.stop()
    live_app.env["SUPPORTDESK_CALL_RING_TIMEOUT"] = str(RING_SECONDS)
    live_app.start()

    dashboard = media_context().new_page()
    dashboard_signed_in_and_available(dashboard, live_app)
    shop = media_context().new_page()
    widget = open_widget(shop, live_app)
    write(widget, "Can you show me how to descale the kettle?")
    pane = open_chat(dashboard, chat_entry(dashboard, "Can you show me how to descale"))
    frame = widget_frame(shop)
    assert frame.evaluate("window.__mediaRequests") == 0

    # 1. alice starts a video call; the shopper sees the invitation, nothing turned on.
    pane.get_by_role("button", name="Video call").click()
    expect(pane.locator(".call-status")).to_have_text("Ringing… waiting for the visitor to answer.")
    expect(widget.locator(".sd-call-title")).to_have_text("alice is video calling you")
    expect(widget.locator(".sd-call-note")).to_have_text(
        "Your camera and microphone turn on only if you accept."
    )
    assert frame.evaluate("window.__mediaRequests") == 0
    assert frame.evaluate("window.__peerConnections.length") == 0

    # 2. The shopper accepts: media flows both ways, audio and video, and keeps flowing.
    widget.get_by_role("button", name="Accept").click()
    agent_side = expect_media_flowing(dashboard, video=True)
    visitor_side = expect_media_flowing(frame, video=True)
    print(f"\nagent inbound: {agent_side}\nvisitor inbound: {visitor_side}")
    expect(pane.locator(".call-status")).to_have_text("In a video call with the visitor.")
    expect(widget.locator(".sd-call-note")).to_have_text("In a call with alice.")
    # (make screenshots) The fake devices' test pattern on both sides.
    dashboard.screenshot(path=screenshot_path("dashboard-call.png", tmp_path))
    shop.screenshot(path=screenshot_path("widget-call.png", tmp_path))

    # Mute and camera off on both sides are the tracks' own switches.
    pane.get_by_role("button", name="Mute").click()
    expect(pane.get_by_role("button", name="Unmute")).to_have_attribute("aria-pressed", "true")
    widget.get_by_role("button", name="Camera off").click()
    expect(widget.get_by_role("button", name="Camera on")).to_be_visible()
    assert (
        frame.evaluate(
            "window.__peerConnections.at(-1).getSenders()"
            ".find((s) => s.track && s.track.kind === 'video').track.enabled"
        )
        is False
    )

    # 3. alice hangs up: both sides end, both connections close, the transcript says so.
    pane.get_by_role("button", name="Hang up").click()
    expect(pane.locator(".call-status")).to_have_text(re.compile(r"^Call ended after 0:\d\d\.$"))
    expect(widget.locator(".sd-call-note")).to_have_text("Call ended.")
    dashboard.wait_for_function(CLOSED)
    frame.wait_for_function(CLOSED)
    expect(widget.get_by_text("The visitor joined the call.")).to_be_visible()
    expect(widget.get_by_text(re.compile(r"^The call ended after 0:\d\d\.$"))).to_be_visible()
    expect(pane.get_by_role("button", name="Video call")).to_be_enabled()

    # 4. An audio call the shopper declines: alice is told.
    pane.get_by_role("button", name="Audio call").click()
    expect(widget.locator(".sd-call-title")).to_have_text("alice is calling you")
    widget.get_by_role("button", name="Decline").click()
    expect(pane.locator(".call-status")).to_have_text("The visitor declined the call.")
    expect(widget.locator(".sd-call-note")).to_have_text("You declined the call.")

    # 5. A call nobody answers: after the ring timeout alice is told, the widget too.
    pane.get_by_role("button", name="Audio call").click()
    expect(widget.locator(".sd-call-title")).to_have_text("alice is calling you")
    expect(pane.locator(".call-status")).to_have_text(
        "No answer: the call timed out.", timeout=(RING_SECONDS + 10) * 1000
    )
    expect(widget.locator(".sd-call-note")).to_have_text("Missed call.")
    expect(widget.get_by_text("The call was not answered.")).to_be_visible()


# The screen the agent shares: Chromium's getDisplayMedia needs a person to pick a
# screen, so the test hands the page a canvas that changes colour 20 times a second.
FAKE_SCREEN = """
() => {
  navigator.mediaDevices.getDisplayMedia = async () => {
    const canvas = document.createElement('canvas');
    canvas.width = 320;
    canvas.height = 240;
    const paint = canvas.getContext('2d');
    let n = 0;
    setInterval(() => {
      paint.fillStyle = `hsl(${(n += 17) % 360} 80% 50%)`;
      paint.fillRect(0, 0, 320, 240);
    }, 50);
    return canvas.captureStream(20);
  };
}
"""

# The shared screen's frames grow, and the voice keeps coming with them.
SCREEN_GROWN = (
    "() => { const now = window.__inbound;"
    " if (!now || !now.video || !now.audio) return false;"
    " const base = window.__statsBase;"
    " if (!base || !base.video) { window.__statsBase = now; return false; }"
    " return now.video.frames > base.video.frames && now.video.packets > base.video.packets"
    "   && now.audio.packets > base.audio.packets; }"
)
PLAYING = (
    "() => { const s = document.querySelector('.sd-call-remote').srcObject;"
    " return [s.getAudioTracks().length, s.getVideoTracks().length]; }"
)


def test_an_audio_call_gets_the_agents_screen_and_ends_when_the_agents_tab_closes(
    media_context, live_app: LiveApp
):
    agent_context = media_context()
    dashboard = agent_context.new_page()
    dashboard_signed_in_and_available(dashboard, live_app)
    shop = media_context().new_page()
    widget = open_widget(shop, live_app)
    write(widget, "The kettle's display shows E4.")
    pane = open_chat(dashboard, chat_entry(dashboard, "display shows E4"))
    frame = widget_frame(shop)

    pane.get_by_role("button", name="Audio call").click()
    expect(widget.locator(".sd-call-title")).to_have_text("alice is calling you")
    widget.get_by_role("button", name="Accept").click()
    visitor_side = expect_media_flowing(frame, video=False)
    expect_media_flowing(dashboard, video=False)
    assert visitor_side["after"]["video"] is None  # an audio call: no video yet
    expect(widget.get_by_role("button", name="Camera off")).to_be_hidden()

    # alice shares her screen: a second offer adds the video, the widget answers it.
    dashboard.evaluate(FAKE_SCREEN)
    pane.get_by_role("button", name="Share screen").click()
    expect(pane.get_by_role("button", name="Stop sharing")).to_have_attribute(
        "aria-pressed", "true"
    )
    frame.evaluate(SAMPLE)
    frame.wait_for_function(SCREEN_GROWN, timeout=STATS_TIMEOUT_MS, polling=100)
    expect(widget.locator(".sd-call-media")).not_to_have_class(re.compile("sd-call-audio"))
    assert frame.evaluate(PLAYING) == [1, 1]  # the screen beside the voice, not instead

    # alice's tab closes: the server ends the call for the shopper within seconds.
    dashboard.close()
    expect(widget.locator(".sd-call-note")).to_have_text("The call was disconnected.")
    frame.wait_for_function(CLOSED)
    expect(
        widget.get_by_text(
            re.compile(r"^The call ended after 0:\d\d \(the connection was lost\)\.$")
        )
    ).to_be_visible()


def test_a_reload_while_alice_rings_shows_the_call_again_and_closing_the_shop_ends_it(
    media_context, live_app: LiveApp
):
    dashboard = media_context().new_page()
    dashboard_signed_in_and_available(dashboard, live_app)
    shop = media_context().new_page()
    widget = open_widget(shop, live_app)
    write(widget, "Does the kettle come in blue?")
    pane = open_chat(dashboard, chat_entry(dashboard, "come in blue"))
    status = pane.locator(".call-status")

    # alice calls; the shopper reloads the page before answering: the new page's widget
    # (its socket on the server within the closed one's grace) shows the call again.
    pane.get_by_role("button", name="Audio call").click()
    expect(widget.locator(".sd-call-title")).to_have_text("alice is calling you")
    shop.reload()
    widget = shop.frame_locator("#supportdesk-frame")
    expect(widget.locator(".sd-call-title")).to_have_text("alice is calling you")
    expect(status).to_have_text("Ringing… waiting for the visitor to answer.")
    widget.get_by_role("button", name="Accept").click()
    expect_media_flowing(widget_frame(shop), video=False)
    pane.get_by_role("button", name="Hang up").click()
    expect(widget.locator(".sd-call-note")).to_have_text("Call ended.")

    # Another call; the shop's only tab closes before an answer: alice is told within
    # seconds (the closed socket's grace, 3 s), not at the 30 s ring timeout.
    pane.get_by_role("button", name="Video call").click()
    expect(widget.locator(".sd-call-title")).to_have_text("alice is video calling you")
    shop.close()
    expect(status).to_have_text("The call was disconnected.", timeout=10_000)
    expect(pane.get_by_text("The call ended before it was answered.")).to_be_visible()
