"""The embeddable widget: the loader script site owners paste, the launcher's look, and
the chat frame page the loader opens (the only page of ours another origin may embed)."""

import hashlib
import re
from functools import cache
from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import pgettext
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET

from . import attachments, csp, languages, origins, selectors
from .errors import NotFound, SiteDisabled
from .models import Site, SiteText

DARK_INK = "#111111"
DEFAULT_COLOUR = Site._meta.get_field("widget_color").default
# A greeting left at its default is the product's sentence, shown in the visitor's language;
# one the owner wrote is theirs, shown as written unless a SiteText overrides it.
DEFAULT_GREETING = Site._meta.get_field("widget_greeting").default
HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
LOADER_PATH = Path(settings.BASE_DIR) / "static" / "widget" / "loader.js"
# Sites embed an unversioned URL forever: browsers keep the loader a few minutes and
# then revalidate it cheaply (ETag), so a fix reaches every site within the hour.
LOADER_CACHE = "public, max-age=300, stale-while-revalidate=3600"
# An origin as `create_site` and the admin store it. Anything else (a stray space or
# `;`) would change the meaning of the CSP header, so it is left out rather than quoted.
CSP_ORIGIN = re.compile(r"https?://([a-z0-9.\-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?")


# Outside string literals: a comment line, or blanks next to punctuation.
JS_STRING = re.compile(r"""('(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")""")
JS_BLOCK_COMMENT = re.compile(r"^[ \t]*/\*.*?\*/[ \t]*\n", re.S | re.M)
JS_PUNCTUATION_BLANKS = re.compile(r"[ \t]*([-=(){}\[\],;:+?<>&|!*%])[ \t]*")
# A line break after which, or before which, no semicolon can be inserted: the statement
# or expression goes on (after `;` or `{` a new one starts anyway).
JS_JOINABLE_BREAK = re.compile(r"(?<=[;{,(\[+?:=&|])\n|\n(?=[?:.+)\]])")
# `(x)=>` is `x=>`.
JS_LONE_PARAMETER = re.compile(r"\((\w+)\)=>")


def compact_js(source: str) -> str:
    """The loader as served: its readable source without comments, indentation, the
    blanks around punctuation and the line breaks no semicolon could be inserted at.
    The other line breaks stay, so automatic semicolon insertion reads it exactly as
    the source. The source keeps to what this can see: comments on lines of their own,
    no template literals, no quote or blank inside a regex literal, and no `a - -b` or
    `a + +b`."""
    source = JS_BLOCK_COMMENT.sub("", source)
    lines = (line.strip() for line in source.splitlines())
    source = "\n".join(line for line in lines if line and not line.startswith("//")) + "\n"
    parts = JS_STRING.split(source)
    # split() with one group alternates code, string, code, ...: only code is touched.
    parts[::2] = [
        JS_LONE_PARAMETER.sub(
            r"\1=>", JS_JOINABLE_BREAK.sub("", JS_PUNCTUATION_BLANKS.sub(r"\1", code))
        )
        for code in parts[::2]
    ]
    # 'ab'+'cd' is 'abcd': the source writes long strings in pieces to fit its lines.
    # Only where nothing binds tighter than + to either piece (`x*'a'+'b'`, `'b'.length`).
    merged = [parts[0]]
    for n in range(1, len(parts), 2):
        literal, code = parts[n], parts[n + 1]
        if (
            merged[-1] == "+"
            and len(merged) > 2
            and merged[-2][0] == literal[0]
            and merged[-3][-1:] in set("(,=+:?[;{")
            and code[:1] not in set(".[(")
        ):
            merged.pop()
            merged[-1] = merged[-1][:-1] + literal[1:]
        else:
            merged.append(literal)
        merged.append(code)
    return "".join(merged)


@cache
def _loader_cached() -> tuple[bytes, str]:
    return _read_loader()


def _read_loader() -> tuple[bytes, str]:
    body = compact_js(LOADER_PATH.read_text(encoding="utf-8")).encode()
    return body, hashlib.sha256(body).hexdigest()[:32]


def loader_source() -> tuple[bytes, str]:
    """The loader's bytes and ETag; read once per process, except while developing."""
    return _read_loader() if settings.DEBUG else _loader_cached()


@require_GET
def widget_js(request: HttpRequest) -> HttpResponse:
    body, digest = loader_source()
    etag = f'"{digest}"'
    if etag in request.headers.get("If-None-Match", ""):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    response["ETag"] = etag
    response["Cache-Control"] = LOADER_CACHE
    # Host pages that isolate themselves (COEP: require-corp) may still load it.
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


def _enabled_site(site_key: str) -> Site:
    try:
        return selectors.enabled_site(site_key)
    except (NotFound, SiteDisabled):
        raise Http404("No such site, or it is disabled.") from None


def _luminance(hex_colour: str) -> float:
    """WCAG relative luminance of `#rrggbb`."""
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def ink_for(background: str) -> str:
    """White or near-black, whichever contrasts more with the site's colour, so text and
    icons on the brand colour stay readable whatever colour the owner picked."""
    lum = _luminance(background)
    on_white = 1.05 / (lum + 0.05)
    on_dark = (lum + 0.05) / (_luminance(DARK_INK) + 0.05)
    return "#ffffff" if on_white >= on_dark else DARK_INK


def appearance(site: Site) -> dict[str, str]:
    """The site's widget look, safe to put in CSS: a `#rrggbb` colour (the default if the
    stored one is malformed), the ink that reads on it, and `left` or `right`."""
    colour = site.widget_color if HEX_COLOUR.fullmatch(site.widget_color or "") else DEFAULT_COLOUR
    side = "left" if site.widget_position == Site.WidgetPosition.LEFT else "right"
    return {"color": colour.lower(), "ink": ink_for(colour), "position": side}


def frame_ancestors(site: Site) -> list[str]:
    """The site's allowed origins, exactly; `'none'` when it has none."""
    allowed = [o for o in site.allowed_origins if isinstance(o, str) and CSP_ORIGIN.fullmatch(o)]
    return allowed or ["'none'"]


@require_GET
def widget_config(request: HttpRequest, site_key: str) -> JsonResponse:
    """What the loader needs before any frame exists: the launcher's colour and side.

    Read cross-origin by the loader. Only the site's own origins get an answer a browser
    lets them read, so a copied embed tag on another site shows no launcher at all (the
    frame's `frame-ancestors` is what actually keeps the chat off such pages).
    """
    site = _enabled_site(site_key)
    origin = request.headers.get("Origin")
    if origin is not None and not origins.visitor_origin_allowed(
        origin, request.get_host(), site.allowed_origins
    ):
        response = JsonResponse({"error": "forbidden", "detail": "Origin not allowed."}, status=403)
    else:
        language = languages.visitor_language(request, fixed=site.widget_language)
        with translation.override(language):
            words = {
                # The launcher opens and closes the chat's window (not the conversation).
                "open": pgettext("launcher", "Open chat"),
                "close": pgettext("launcher", "Close chat"),
                # "#" is where the loader puts the count.
                "unread": _(", %(count)s unread") % {"count": "#"},
                "title": _("Chat with us"),
            }
        # The frame's path, with the embed's data-lang when it names a shipped language.
        words["frame"] = reverse("widget-frame", args=[site.key])
        if fixed := languages.supported(request.GET.get("lang")):
            words["frame"] += f"?lang={fixed}"
        response = JsonResponse({**appearance(site), **words})
        if origin is not None:
            response["Access-Control-Allow-Origin"] = origin
    response["Vary"] = "Origin"
    response["Cache-Control"] = "public, max-age=60"
    return response


@require_GET
def widget_text(request: HttpRequest, language: str) -> HttpResponse:
    """The strings of the frame's on-demand modules (ended.js, upload.js, call.js) and
    the system messages' sentences in `language`:
    the same for every site, so browsers and proxies keep them a day."""
    if languages.supported(language) != language:
        raise Http404("No such language.")
    with translation.override(language):
        body = languages.script_json(languages.later_text())
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Cache-Control"] = "public, max-age=86400"
    return response


def widget_texts(site: Site, language: str) -> dict[str, str]:
    """The greeting and offline text in `language`, active: the site's own for that
    language where it set one, else its greeting as written, else the defaults."""
    own = SiteText.objects.filter(site=site, language=language).first()
    greeting = site.widget_greeting
    if greeting == DEFAULT_GREETING:
        greeting = _("Hi! How can we help you today?")
    return {
        "greeting": (own and own.greeting) or greeting,
        "offline_text": (own and own.offline_text)
        or _("No one is online right now. Leave a message and we will reply by email."),
    }


@require_GET
@xframe_options_exempt  # framed by design; CSP frame-ancestors decides who may embed it
def widget_frame(request: HttpRequest, site_key: str) -> HttpResponse:
    site = _enabled_site(site_key)
    language = languages.visitor_language(request, fixed=site.widget_language)
    # The page is in the visitor's language whatever LocaleMiddleware chose from the
    # request alone: the site's setting and data-lang are not in the request's headers.
    with translation.override(language):
        response = _render_frame(request, site, language)
    # LocaleMiddleware adds `Vary: Accept-Language`; setdefault keeps this one.
    response["Content-Language"] = language
    return response


def _render_frame(request: HttpRequest, site: Site, language: str) -> HttpResponse:
    config = {
        "site_key": site.key,
        "name": site.name,
        **appearance(site),
        # The privacy line shows the sneak-peek notice from the first paint; the
        # socket's `ready.sneak_peek` then says what that socket actually does.
        "sneak_peek": site.sneak_peek,
        "allowed_origins": site.allowed_origins,
        "sessions_url": reverse("visitor-sessions"),
        "ws_path": "/ws/visitor/",
        # (attachments) Where files go, and the limit the frame checks before uploading.
        "attachments_url": reverse("attachments"),
        "attachment_max_bytes": settings.SUPPORTDESK_ATTACHMENT_MAX_BYTES,
        "attachment_accept": attachments.ACCEPT,
        # The strings the on-demand modules fetch when they load (widget_text).
        "text_url": reverse("widget-text", args=[language]),
    }
    texts = widget_texts(site, language)
    # The greeting is in the page's HTML only; the script shows the offline text.
    text = {**languages.frame_text(), "offline_intro": texts["offline_text"]}
    context = {
        "site": site,
        "greeting": texts["greeting"],
        "config": config,
        "language": language,
        "direction": languages.direction(language),
        "text": text,
        "text_json": languages.script_json(text),
    }
    response = render(request, "widget/frame.html", context)
    response["Cache-Control"] = "no-cache"
    return csp.with_csp(
        response,
        csp.policy(
            connect_src=["'self'", *csp.websocket_sources(request)],
            # blob: for attachment thumbnails, fetched with the visitor's token.
            img_src=["'self'", "data:", "blob:"],
            # (calls) The call's streams in <video>, from the camera and the peer.
            media_src=["'self'", "mediastream:", "blob:"],
            font_src=["'none'"],
            form_action=["'none'"],
            frame_ancestors=frame_ancestors(site),
        ),
    )
