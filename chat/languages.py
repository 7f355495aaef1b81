"""Which language a visitor's widget speaks, and the words its script shows; the
language a socket, a site's mail and a count's plural forms are written in.

The frame page carries the strings of one language only (`frame_text`), inlined as JSON:
the script holds keys, never sentences, so each string is weighed once in the frame's
20 KB budget whatever the language (tests/test_widget_size.py)."""

import json
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest
from django.http.cookie import parse_cookie
from django.utils import translation
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from . import system_messages

RIGHT_TO_LEFT = {"ar"}
# What json_script escapes so the JSON cannot end its <script> element early.
SCRIPT_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}


def supported(code: str | None) -> str | None:
    """The shipped language `code` names (`de`, `de-AT` and `DE` all name `de`), or None."""
    if not code or not isinstance(code, str) or len(code) > 20:
        return None
    try:
        return translation.get_supported_language_variant(code.strip().lower())
    except LookupError:
        return None


def visitor_language(request: HttpRequest, *, fixed: str = "") -> str:
    """The embed's `data-lang` (the `lang` query parameter the loader passes) first: one
    page of a shop may be its German version. Then the site's fixed language, then the
    visitor's browser (Accept-Language), then LANGUAGE_CODE."""
    return (
        supported(request.GET.get("lang"))
        or supported(fixed)
        or supported(translation.get_language_from_request(request))
        or settings.LANGUAGE_CODE
    )


def site_language(site) -> str:
    """The language of what is written for a site's people when nobody's own is known
    (mail to its agents): the site's fixed widget language, else LANGUAGE_CODE."""
    return supported(site.widget_language) or settings.LANGUAGE_CODE


def socket_language(scope: dict) -> str:
    """The language a socket's human-readable texts (`error.detail`) are in before it
    says more: what LocaleMiddleware picks for a page from the same browser (the
    *Language* cookie the dashboard's menu sets, else Accept-Language), else
    LANGUAGE_CODE. A visitor's socket then speaks its widget's language (hello)."""
    request = HttpRequest()
    request.COOKIES = scope.get("cookies") or _cookies(scope)
    accept = dict(scope.get("headers") or []).get(b"accept-language", b"")
    request.META["HTTP_ACCEPT_LANGUAGE"] = accept.decode("latin-1")
    return supported(translation.get_language_from_request(request)) or settings.LANGUAGE_CODE


def _cookies(scope: dict) -> dict[str, str]:
    raw = dict(scope.get("headers") or []).get(b"cookie", b"")
    return parse_cookie(raw.decode("latin-1"))


# Each plural category of CLDR (what Intl.PluralRules answers in the browser) with a
# number it covers, per shipped language. gettext's Plural-Forms in each .po chooses the
# same form for every number of a category, so the form of the sample is the category's.
PLURAL_SAMPLES = {
    "en": {"one": 1, "other": 2},
    "de": {"one": 1, "other": 2},
    "fr": {"one": 1, "many": 1_000_000, "other": 2},
    "es": {"one": 1, "many": 1_000_000, "other": 2},
    "pt": {"one": 1, "many": 1_000_000, "other": 2},
    "ar": {"zero": 0, "one": 1, "two": 2, "few": 3, "many": 11, "other": 100},
}


def plural_forms(form: Callable[[int], str]) -> dict[str, str]:
    """A text that depends on a count (`%(count)s`), for a script: its forms in the active
    language by plural category, for t() to choose with Intl.PluralRules (the dashboard's
    dom.js). `form` is `lambda n: ngettext(singular, plural, n)`, written out where the
    text is so that makemessages finds it."""
    language = (translation.get_language() or settings.LANGUAGE_CODE).split("-")[0]
    samples = PLURAL_SAMPLES.get(language, PLURAL_SAMPLES["en"])
    return {category: form(n) for category, n in samples.items()}


def script_json(value: object) -> SafeString:
    """`value` as JSON safe inside <script type="application/json">, like json_script
    but with the text as UTF-8, not \\u escapes: Arabic takes a third of the bytes."""
    return mark_safe(json.dumps(value, ensure_ascii=False).translate(SCRIPT_ESCAPES))


def direction(code: str) -> str:
    return "rtl" if code.split("-")[0] in RIGHT_TO_LEFT else "ltr"


def system_sentences() -> dict[str, str]:
    """The system messages' sentences in the active language, as `sys_CODE`."""
    return {f"sys_{code}": _(text) for code, text in system_messages.SENTENCES.items()}


def frame_text() -> dict[str, str]:
    """What the frame's first modules (static/widget/frame/chat.js and main.js) say, in
    the active language, by key. `%(name)s` marks what the script fills in (t())."""
    return {
        # chat.js: the header, banners, the log
        "offline": _("You are offline. Messages will be sent when you are back online."),
        "reconnecting": _("Connection lost. Reconnecting…"),
        "unavailable": _("Chat is not available on this site."),
        "support": _("Support"),
        "queue": _("You are number %(position)s in line"),
        "queue_soon": _("You are number %(position)s in line — less than a minute"),
        # %(wait)s: "4 min", "2 hours", with the plural the language's own rules call for
        # (Intl.NumberFormat's units in chat.js)
        "queue_wait": _("You are number %(position)s in line — about %(wait)s"),
        "status_active": _("Support at %(site)s"),
        # the knowledge-base bot (kb/): its status, its name, 👍/👎 under an answer
        "status_bot": _("Our assistant answers first"),
        "assistant": _("Assistant"),
        "helpful": _("Helpful?"),
        "helped": _("Yes, this helped"),
        "not_helped": _("No, it did not"),
        "status_ended": _("This chat has ended"),
        "status_email": _("We reply by email"),
        "status_online": _("Agents online — we typically reply in a few minutes"),
        "status_default": _("We usually reply in a few minutes"),
        "file_gone": _("it is no longer available"),
        "http_error": _("error %(status)s"),
        "download_failed": _("Could not download %(name)s: %(reason)s."),
        "download": _("Download %(name)s, %(size)s"),
        "you": _("You"),
        "joined": _("%(name)s joined the chat"),
        "typing": _("%(name)s is typing…"),
        # main.js: receipts
        "sending": _("Sending…"),
        "waiting": _("Waiting for connection…"),
        "seen": _("Seen"),
        "sent": _("Sent"),
        "retry": _("Retry"),
        "not_sent": _("Not sent."),
        "not_sent_because": _("Not sent: %(reason)s"),
        "no_answer": _("no answer from the server"),
        "too_fast": _("You are sending messages too fast. Please wait a moment."),
        "went_wrong": _("Something went wrong."),
        # main.js: the offline form
        "your_name": _("Your name"),
        "your_email": _("Your email"),
        "your_question": _("Your question"),
        "leave_message": _("Leave message"),
        "give_all": _("Please give your name, email and question."),
        "offline_thanks": _("Thanks! We will reply to %(email)s."),
        "try_again": _("please try again."),
    }


def later_text() -> dict[str, str]:
    """What the modules the frame loads on demand say (ended.js once a chat has ended,
    call.js when a call is offered), and the system messages' sentences by code
    (`sys_CODE`, chat.js): fetched when first needed, not in every frame page."""
    return {
        **system_sentences(),
        # upload.js: a file the visitor sends
        "uploading": _("Uploading %(name)s…"),
        "file_too_large": _('"%(name)s" is too large: the limit is %(limit)s.'),
        "file_type": _('"%(name)s" cannot be sent: images, PDF, text, Word and Excel files only.'),
        "file_mismatch": _('"%(name)s" cannot be sent: its name does not match what the file is.'),
        "file_no_chat": _(
            '"%(name)s" cannot be sent yet: write a message first to start the chat.'
        ),
        "file_rate": _('"%(name)s" was not sent: too many files. Please wait a moment.'),
        "file_failed": _('"%(name)s" was not sent: %(reason)s'),
        "file_connection": _('"%(name)s" was not sent: the connection failed.'),
        # ended.js: after a chat
        "rate": _("Rate this chat"),
        "rate_question": _("How was this chat?"),
        "stars": _("%(n)s out of 5"),
        "comment": _("Anything to add? (optional)"),
        "comment_label": _("Comment (optional)"),
        "send_rating": _("Send rating"),
        "feedback_thanks": _("Thanks for your feedback!"),
        "email_transcript": _("Email me the transcript"),
        "send_transcript": _("Send transcript"),
        "transcript_sent": _("Transcript sent to %(email)s."),
        "enter_email": _("Please enter your email address."),
        "not_connected": _("Not connected. Please try again in a moment."),
        "no_answer_retry": _("No answer from the server. Please try again."),
        "bad_email": _("That does not look like an email address."),
        "rate_limited": _("Too many requests. Please try again later."),
        "nothing_to_send": _("There is no chat to send yet."),
        "transcript_failed": _("The transcript could not be sent. Please try again later."),
        "you_ended": _("You ended the chat."),
        "agent_ended": _("%(name)s ended the chat."),
        "chat_ended": _("This chat has ended."),
        "new_chat": _("Start a new chat"),
        # call.js, loaded only when a call is offered
        "call": _("Call"),
        "calling": _("%(name)s is calling you"),
        "video_calling": _("%(name)s is video calling you"),
        "video_call_with": _("Video call with %(name)s"),
        "call_with": _("Call with %(name)s"),
        "accept": _("Accept"),
        "decline": _("Decline"),
        "mute": _("Mute"),
        "unmute": _("Unmute"),
        "camera_off": _("Camera off"),
        "camera_on": _("Camera on"),
        "hang_up": _("Hang up"),
        "call_ended": _("Call ended."),
        "call_declined": _("You declined the call."),
        "call_missed": _("Missed call."),
        "call_lost": _("The call was disconnected."),
        "call_video_note": _("Your camera and microphone turn on only if you accept."),
        "call_audio_note": _("Your microphone turns on only if you accept."),
        "allow_video": _("Allow the camera and microphone to answer…"),
        "allow_audio": _("Allow the microphone to answer…"),
        "need_video": _("The call needs your camera and microphone. Accept again or decline."),
        "need_audio": _("The call needs your microphone. Accept again or decline."),
        "connecting": _("Connecting…"),
        "in_call": _("In a call with %(name)s."),
        "answered_elsewhere": _("Answered in another tab."),
    }
