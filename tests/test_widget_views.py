"""The widget's HTTP surface: the loader, the launcher's config and the chat frame page,
with the headers that decide who may embed and read them."""

import json
import re

import pytest

from chat.widget_views import compact_js, ink_for

pytestmark = pytest.mark.django_db

ACME = "https://acme.example"


def frame_url(site) -> str:
    return f"/widget/frame/{site.key}/"


def csp_directives(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in header.split(";"))


def page_config(response) -> dict:
    match = re.search(
        r'<script id="sd-config" type="application/json">(.*?)</script>', response.text, re.S
    )
    assert match is not None, "the frame page carries its config as json_script"
    return json.loads(match.group(1))


def test_frame_may_be_embedded_only_by_the_sites_own_origins(client, personas):
    response = client.get(frame_url(personas.acme))
    assert response.status_code == 200
    assert csp_directives(response)["frame-ancestors"] == ACME
    # CSP frame-ancestors decides, so the project-wide X-Frame-Options: DENY is lifted here.
    assert "X-Frame-Options" not in response


def test_frame_lists_every_allowed_origin_and_nothing_else(client, personas):
    personas.acme.allowed_origins = [ACME, "http://localhost:8001"]
    personas.acme.save()
    response = client.get(frame_url(personas.acme))
    assert csp_directives(response)["frame-ancestors"] == f"{ACME} http://localhost:8001"


def test_site_without_origins_cannot_be_framed_anywhere(client, personas):
    personas.acme.allowed_origins = []
    personas.acme.save()
    response = client.get(frame_url(personas.acme))
    assert csp_directives(response)["frame-ancestors"] == "'none'"


def test_a_malformed_origin_cannot_smuggle_directives_into_the_policy(client, personas):
    personas.acme.allowed_origins = [ACME, "https://x.example; script-src *"]
    personas.acme.save()
    directives = csp_directives(client.get(frame_url(personas.acme)))
    assert directives["frame-ancestors"] == ACME
    assert directives["script-src"] == "'self'"


def test_frame_runs_only_its_own_scripts_and_styles_and_talks_only_to_the_app(client, personas):
    directives = csp_directives(client.get(frame_url(personas.acme)))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self' ws://testserver wss://testserver"
    # blob: shows attachment thumbnails the frame fetched with the visitor's token.
    assert directives["img-src"] == "'self' data: blob:"
    assert directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'none'"


def test_frame_of_an_unknown_or_disabled_site_is_not_found(client, personas):
    assert client.get("/widget/frame/no-such-site/").status_code == 404
    personas.acme.enabled = False
    personas.acme.save()
    assert client.get(frame_url(personas.acme)).status_code == 404


def test_other_pages_still_refuse_to_be_framed(client, personas):
    assert client.get("/accounts/login/")["X-Frame-Options"] == "DENY"


def test_frame_config_carries_the_sites_look_and_keeps_the_greeting_inert(client, personas):
    personas.acme.widget_color = "#FFD400"
    personas.acme.widget_position = "left"
    personas.acme.widget_greeting = "</script><script>alert(1)</script> Hi!"
    personas.acme.save()
    response = client.get(frame_url(personas.acme))
    config = page_config(response)
    assert config["site_key"] == personas.acme.key
    assert config["color"] == "#ffd400"
    assert config["ink"] == "#111111"  # dark text on a yellow brand colour
    assert config["position"] == "left"
    # The greeting is in the page once, as text (chat/languages.py keeps it out of config).
    assert "greeting" not in config
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; Hi!" in response.text
    assert config["allowed_origins"] == [ACME]
    assert "<script>alert(1)" not in response.text


def test_loader_is_javascript_that_browsers_cache_briefly_and_revalidate(client):
    response = client.get("/widget.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert "max-age=300" in response["Cache-Control"]
    assert b"postMessage" in response.content
    again = client.get("/widget.js", HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304
    assert again.content == b""


def test_launcher_config_is_readable_by_the_sites_origins_only(client, personas):
    url = f"/widget/config/{personas.acme.key}/"
    allowed = client.get(url, HTTP_ORIGIN=ACME)
    assert allowed.status_code == 200
    assert allowed["Access-Control-Allow-Origin"] == ACME
    assert allowed.json() == {
        "color": "#2456d6",
        "ink": "#ffffff",
        "position": "right",
        "open": "Open chat",
        "close": "Close chat",
        "unread": ", # unread",
        "title": "Chat with us",
        "frame": f"/widget/frame/{personas.acme.key}/",
    }

    foreign = client.get(url, HTTP_ORIGIN="https://evil.example")
    assert foreign.status_code == 403
    assert "Access-Control-Allow-Origin" not in foreign
    assert client.get("/widget/config/no-such-site/", HTTP_ORIGIN=ACME).status_code == 404


def test_served_loader_drops_comments_and_blanks_but_never_touches_strings():
    source = "/* header\n * more */\nconst a = 'x = y, z';\n  // a note\nf( a , \"b ; c\" );\n"
    assert compact_js(source) == "const a='x = y, z';f(a,\"b ; c\");"


@pytest.mark.parametrize(
    ("source", "served"),
    [
        # A break where a semicolon could be inserted stays; where none could, it goes.
        ("a = b\n(c)\n", "a=b\n(c)\n"),
        ("x = f(\n  y,\n  z\n)\n", "x=f(y,z)\n"),
        ("return\nx\n", "return\nx\n"),
        ("a = b\n  ? c\n  : d;\n", "a=b?c:d;"),
        # Pieces of one string are one string, unless something binds tighter.
        ("s = 'ab' +\n  'cd';\n", "s='abcd';"),
        ("s = x * 'ab' + 'cd';\n", "s=x*'ab'+'cd';"),
        ("s = 'ab' + 'cd'.length;\n", "s='ab'+'cd'.length;"),
        ("s = 'ab' + \"cd\";\n", "s='ab'+\"cd\";"),
        # A lone parameter needs no parentheses.
        ("f((x) => x + 1);\n", "f(x=>x+1);"),
    ],
)
def test_served_loader_reads_as_its_source(source, served):
    assert compact_js(source) == served


@pytest.mark.parametrize(
    ("background", "ink"),
    [
        ("#2456d6", "#ffffff"),
        ("#ffd400", "#111111"),
        ("#000000", "#ffffff"),
        ("#f5f5f5", "#111111"),
    ],
)
def test_text_on_the_brand_colour_uses_the_ink_that_contrasts_more(background, ink):
    assert ink_for(background) == ink


def test_launcher_and_frame_speak_the_embeds_data_lang_then_the_sites_then_the_browsers(
    client, personas
):
    config = f"/widget/config/{personas.acme.key}/"
    frame = f"/widget/frame/{personas.acme.key}/"
    # The browser's language when nothing else is set.
    german = client.get(config, {"lang": ""}, HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9")
    assert german.json()["open"] == "Chat öffnen"
    assert german.json()["frame"] == frame
    page = client.get(frame, HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9")
    assert '<html lang="de" dir="ltr">' in page.text
    assert "Guten Tag! Wie können wir Ihnen heute helfen?" in page.text
    # The site's fixed language wins over the browser's.
    personas.acme.widget_language = "fr"
    personas.acme.save()
    page = client.get(frame, HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9")
    assert '<html lang="fr" dir="ltr">' in page.text
    # The embed's data-lang wins over both, and rides along to the frame.
    arabic = client.get(config, {"lang": "ar"}, HTTP_ACCEPT_LANGUAGE="de")
    assert arabic.json()["frame"] == f"{frame}?lang=ar"
    page = client.get(arabic.json()["frame"], HTTP_ACCEPT_LANGUAGE="de")
    assert '<html lang="ar" dir="rtl">' in page.text
    assert page["Content-Language"] == "ar"
    # A language not shipped is no language: the site's.
    assert '<html lang="fr"' in client.get(frame, {"lang": "xx"}).text


def test_a_site_text_replaces_the_greeting_and_offline_text_in_its_language_only(client, personas):
    from chat.models import SiteText

    SiteText.objects.create(
        site=personas.acme, language="de", greeting="Moin! Was können wir tun?", offline_text=""
    )
    frame = f"/widget/frame/{personas.acme.key}/"
    german = client.get(frame, {"lang": "de"}).text
    assert "Moin! Was können wir tun?" in german
    # The offline text left empty keeps the default, translated.
    assert "Im Moment ist niemand online." in german
    spanish = client.get(frame, {"lang": "es"}).text
    assert "Moin!" not in spanish
    assert "¡Hola! ¿En qué podemos ayudarle hoy?" in spanish


def test_the_on_demand_strings_are_served_per_language_and_unknown_ones_are_not_found(client):
    french = client.get("/widget/text/fr.json")
    assert french.status_code == 200
    assert french.json()["new_chat"] == "Commencer une nouvelle conversation"
    assert "max-age" in french["Cache-Control"]
    assert client.get("/widget/text/xx.json").status_code == 404
