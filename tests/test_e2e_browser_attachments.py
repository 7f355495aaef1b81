"""Attachments in real pages (Debian's Chromium, real daphne): a visitor's photo shows up
as a thumbnail on the agent's dashboard, the agent's PDF as a download link in the
widget, and a refused file is explained to the visitor.

Every wait is Playwright's auto-waiting `expect`, a page function with a deadline, or a
download event.
"""

import io
import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser import screenshot_path
from tests.test_e2e_browser_dashboard import open_chat, signed_in_and_available
from tests.test_e2e_browser_widget import open_widget, write

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture
def media_root(tmp_path, monkeypatch):
    """Where the app stores uploads (set before the app starts)."""
    path = tmp_path / "media"
    monkeypatch.setenv("MEDIA_ROOT", str(path))
    return path


def photo(path):
    out = io.BytesIO()
    Image.new("RGB", (800, 600), (210, 40, 40)).save(out, "PNG")
    path.write_bytes(out.getvalue())
    return path


def pick_file(page, button, path) -> None:
    """Click an attach button and choose `path` in the file chooser it opens."""
    with page.expect_file_chooser() as chooser:
        button.click()
    chooser.value.set_files(str(path))


def new_chat_on_dashboard(page) -> int:
    """The id of the one chat the dashboard lists, once it does."""
    item = page.locator("#chat-list li[data-conversation]")
    expect(item).to_have_count(1)
    return int(item.get_attribute("data-conversation"))


def test_visitor_photo_reaches_the_dashboard_and_the_agents_pdf_reaches_the_visitor(
    media_root, new_context, live_app, tmp_path
):
    agent_page = new_context().new_page()
    signed_in_and_available(agent_page, live_app)
    shop_page = new_context().new_page()
    frame = open_widget(shop_page, live_app)
    write(frame, "My kettle arrived broken")
    pane = open_chat(agent_page, new_chat_on_dashboard(agent_page))
    expect(pane.get_by_text("My kettle arrived broken")).to_be_visible()

    # The visitor attaches a photo: it goes up, then out as a message of its own.
    pick_file(
        shop_page, frame.get_by_role("button", name="Attach a file"), photo(tmp_path / "kettle.png")
    )
    own_thumb = frame.locator(".sd-me img.sd-thumb")
    expect(own_thumb).to_have_attribute("src", re.compile(r"^blob:"))
    expect(frame.locator("#sd-upload")).to_be_hidden()

    # The agent sees the thumbnail (decoded, 320 px wide), linked to the original.
    thumb = pane.locator("img.file-thumb")
    expect(thumb).to_have_attribute("alt", "kettle.png")
    agent_page.wait_for_function(
        "img => img.complete && img.naturalWidth === 320", arg=thumb.element_handle()
    )
    assert live_app.query(
        "SELECT name, content_type, message_id IS NOT NULL FROM chat_attachment"
    ) == [("kettle.png", "image/png", 1)]

    # The agent answers with a PDF; the visitor gets a download button and the file.
    label = tmp_path / "return-label.pdf"
    label.write_bytes(PDF)
    pick_file(agent_page, pane.get_by_role("button", name="Attach file"), label)
    expect(pane.locator("a.file", has_text="return-label.pdf")).to_be_visible()
    link = frame.get_by_role("button", name=re.compile(r"^Download return-label\.pdf"))
    expect(link).to_be_visible()
    with shop_page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "return-label.pdf"
    assert Path(download.value.path()).read_bytes() == PDF
    agent_page.screenshot(path=screenshot_path("attachments-dashboard.png", tmp_path))
    shop_page.screenshot(path=screenshot_path("attachments-widget.png", tmp_path))
    assert len([p for p in media_root.rglob("*") if p.is_file()]) == 3  # photo, thumb, pdf


def test_the_widget_says_why_a_file_was_not_sent(media_root, new_context, live_app, tmp_path):
    agent_page = new_context().new_page()
    signed_in_and_available(agent_page, live_app)
    shop_page = new_context().new_page()
    frame = open_widget(shop_page, live_app)
    attach = frame.get_by_role("button", name="Attach a file")
    status = frame.locator("#sd-upload")

    # Before any chat exists there is nowhere to put a file.
    pick_file(shop_page, attach, photo(tmp_path / "early.png"))
    expect(status).to_have_text(re.compile(r"write a message first"))

    write(frame, "Here is the page that broke")
    expect(frame.locator(".sd-me .sd-bubble")).to_have_count(1)
    page_file = tmp_path / "screenshot.png"
    page_file.write_bytes(b"<!doctype html><script>alert(1)</script>")
    pick_file(shop_page, attach, page_file)
    expect(status).to_have_text(
        '"screenshot.png" cannot be sent: its name does not match what the file is.'
    )

    big = tmp_path / "huge.txt"
    big.write_bytes(b"x" * (10 * 1024 * 1024 + 1))
    pick_file(shop_page, attach, big)
    expect(status).to_have_text('"huge.txt" is too large: the limit is 10 MB.')
    expect(frame.locator(".sd-me .sd-bubble")).to_have_count(1)
    assert live_app.query("SELECT COUNT(*) FROM chat_attachment") == [(0,)]
