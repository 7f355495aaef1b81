"""The widget and the dashboard in the visitor's and the agent's language, in real pages
(Debian's Chromium, real daphne): German and Arabic (right to left, mirrored) widgets
with screenshots for the README, a queued visitor's wait in French, the dashboard in
Spanish; axe finds nothing serious in any of them. docs/languages.md.

The browser's language is the context's `locale` (navigator.language and the
Accept-Language header), as a visitor's browser would send it."""

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.browser import AgentSocket, VisitorSocket, screenshot_path
from tests.test_e2e_browser_widget import serious_or_critical
from tests.test_widget_screenshots import frame_box

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.browser


def open_widget(page, app, launcher: str):
    page.goto(app.shop_url)
    page.get_by_role("button", name=launcher).click()
    return page.frame_locator("#supportdesk-frame")


def write(frame, label: str, text: str) -> None:
    composer = frame.get_by_role("textbox", name=label)
    composer.fill(text)
    composer.press("Enter")


def assert_axe_clean(page) -> None:
    chat = page.frame(url=re.compile(r".*/widget/frame/.*"))
    results = Axe().run(chat)
    assert serious_or_critical(results) == [], results.generate_report()
    launcher = Axe().run(page, context={"include": [["#supportdesk-launcher"]]})
    assert serious_or_critical(launcher) == [], launcher.generate_report()


def test_german_screenshot_widget_speaks_german_from_the_browsers_language(
    new_context, live_app, tmp_path
):
    alice = AgentSocket(live_app)
    alice.presence("available")
    page = new_context(locale="de-DE").new_page()
    frame = open_widget(page, live_app, "Chat öffnen")
    expect(frame.locator("html")).to_have_attribute("lang", "de")
    expect(frame.locator(".sd-greeting")).to_have_text(
        "Guten Tag! Wie können wir Ihnen heute helfen?"
    )
    write(frame, "Nachricht schreiben", "Guten Tag, ist die Bestellung 1042 schon unterwegs?")
    conversation = alice.expect("conversation.assigned")["conversation"]["id"]
    expect(frame.locator("#sd-status")).to_have_text("Support von Kettle & Crane")
    alice.send({"type": "read", "conversation": conversation, "seq": 1})
    alice.reply(conversation, "Guten Tag! Ja, sie ist gestern verschickt worden.")
    alice.send({"type": "typing", "conversation": conversation, "active": True})
    expect(frame.get_by_text("alice schreibt …")).to_be_visible()
    expect(frame.locator(".sd-me .sd-meta").last).to_have_text("Gelesen")
    expect(page.get_by_role("button", name="Chat schließen")).to_be_visible()
    assert_axe_clean(page)
    frame_box(page)
    page.screenshot(path=screenshot_path("widget-de.png", tmp_path))


def test_arabic_screenshot_widget_runs_right_to_left_and_mirrors(new_context, live_app, tmp_path):
    alice = AgentSocket(live_app)
    alice.presence("available")
    page = new_context(locale="ar-EG").new_page()
    frame = open_widget(page, live_app, "فتح نافذة الدردشة")
    expect(frame.locator("html")).to_have_attribute("dir", "rtl")
    expect(frame.locator("html")).to_have_attribute("lang", "ar")
    write(frame, "اكتب رسالة", "مرحبًا، هل يمكنني تغيير عنوان التوصيل؟")
    conversation = alice.expect("conversation.assigned")["conversation"]["id"]
    alice.reply(conversation, "أهلًا بك! نعم، يمكنك ذلك من صفحة حسابك.")
    alice.send({"type": "read", "conversation": conversation, "seq": 1})
    expect(frame.locator(".sd-me .sd-meta").last).to_have_text("تمت القراءة")
    theirs = frame.locator(".sd-them:not(.sd-greeting) .sd-bubble").last.bounding_box()
    mine = frame.locator(".sd-me .sd-bubble").last.bounding_box()
    log = frame.locator("#sd-log").bounding_box()
    # Mirrored: the visitor's own bubbles hug the left edge, the agent's the right one,
    # and the send button sits left of where the visitor types.
    assert mine["x"] - log["x"] < 40
    assert (log["x"] + log["width"]) - (theirs["x"] + theirs["width"]) < 40
    send = frame.locator("#sd-send").bounding_box()
    composer = frame.locator("#sd-input").bounding_box()
    assert send["x"] < composer["x"]
    assert_axe_clean(page)
    frame_box(page)
    page.screenshot(path=screenshot_path("widget-ar.png", tmp_path))


def test_a_queued_french_visitor_reads_their_wait_in_french(new_context, live_app):
    alice = AgentSocket(live_app)
    alice.presence("available")
    for n in range(2):  # alice's two slots are taken
        VisitorSocket(live_app, origin=live_app.shop_origin).say(f"Hello, I am shopper {n}")
        alice.expect("conversation.assigned")
    page = new_context(locale="fr-FR").new_page()
    frame = open_widget(page, live_app, "Ouvrir le chat")
    write(frame, "Écrire un message", "Bonjour, quelqu'un est-il disponible ?")
    # No closed chats yet: the site's typical 5 minutes, for one of two slots.
    expect(frame.locator("#sd-status")).to_have_text(
        re.compile(r"^Vous êtes en position 1 dans la file d.attente — ")
    )
    expect(frame.get_by_role("button", name="Terminer la conversation")).to_be_visible()
    assert_axe_clean(page)


def test_the_dashboard_in_spanish_for_an_agent_who_chose_it(new_context, live_app):
    page = new_context(locale="es-ES").new_page()
    page.goto(live_app.url + "/agent/")
    page.get_by_label("Nombre de usuario").fill(live_app.agent_username)
    page.get_by_label("Contraseña").fill(live_app.agent_password)
    page.get_by_role("button", name="Iniciar sesión").click()
    expect(page).to_have_url(live_app.url + "/agent/")
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.locator("#connection-text")).to_have_text("Conectado")
    page.get_by_role("button", name="Disponible").click()
    expect(page.get_by_role("button", name="Disponible")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("heading", name="Ningún chat seleccionado")).to_be_visible()
    VisitorSocket(live_app, origin=live_app.shop_origin).say("Hola, ¿tienen envío a Canarias?")
    expect(page.locator("#chat-list .chat-item")).to_have_count(1)
    results = Axe().run(page)
    assert serious_or_critical(results) == [], results.generate_report()
    # The agent's own choice (set_language) wins over the browser's language.
    page.get_by_label("Idioma").select_option("de")
    page.get_by_role("button", name="Cambiar idioma").click()
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.get_by_role("button", name="Verfügbar")).to_be_visible()


def test_the_arabic_dashboard_counts_with_arabic_plural_forms_and_digits(new_context, live_app):
    page = new_context(locale="ar-EG").new_page()
    page.goto(live_app.url + "/agent/")
    page.locator("#id_username").fill(live_app.agent_username)
    page.locator("#id_password").fill(live_app.agent_password)
    page.locator("#id_password").press("Enter")
    expect(page).to_have_url(live_app.url + "/agent/")
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    # t() in the page's own dom.js module: the form Intl.PluralRules picks for each count
    # among those the server sent, the count in the digits Intl writes for Arabic.
    said, digits = page.evaluate(
        """async (counts) => {
          const url = document.querySelector('link[rel=modulepreload][href*="dom.js"]').href;
          const { t } = await import(url);
          const number = new Intl.NumberFormat("ar");
          const said = counts.map((count) => t("earlier_chats", { count }));
          return [said, counts.map((n) => number.format(n))];
        }""",
        [1, 2, 3, 11, 100],
    )
    assert said == [
        "محادثة سابقة واحدة",  # one
        "محادثتان سابقتان",  # two: the dual
        f"{digits[2]} محادثات سابقة",  # 3 to 10: the plural noun
        f"{digits[3]} محادثة سابقة",  # 11 to 99: the singular, accusative
        f"{digits[4]} محادثة سابقة",  # 100 and up
    ]
