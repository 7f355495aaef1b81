"""The sentences the server writes into transcripts (system messages: a transfer, a
requeue, an idle close, a call's lines; the bot's hand-off line), each stored as a code
and its parameters beside the English sentence in `body`, so every reader sees it in
their own language.

`body` stays the English sentence (the wire contract's `body`); the code and parameters
travel as the message's `code` and `params` (docs/protocol.md), and `sentence()` renders
them in the active language for the server's own readers (the transcript email, the
admin)."""

import re

from django.utils.translation import gettext, gettext_noop

# code -> the English sentence, `%(name)s` for each parameter (extracted by makemessages).
SENTENCES = {
    "transferred": gettext_noop("You are now chatting with %(name)s."),
    "transferring": gettext_noop(
        "You are being transferred to another agent. Please wait a moment."
    ),
    "requeued": gettext_noop(
        "Your agent was disconnected. You are back at the front of the queue."
    ),
    "idle_closed": gettext_noop("This conversation was closed after a period of inactivity."),
    "call_started_video": gettext_noop("%(name)s started a video call."),
    "call_started_audio": gettext_noop("%(name)s started an audio call."),
    "call_joined": gettext_noop("The visitor joined the call."),
    "call_declined": gettext_noop("The visitor declined the call."),
    "call_not_answered": gettext_noop("The call was not answered."),
    "call_cancelled": gettext_noop("The call ended before it was answered."),
    "call_ended": gettext_noop("The call ended after %(duration)s."),
    "call_lost": gettext_noop("The call ended after %(duration)s (the connection was lost)."),
    # The knowledge-base bot's line when no article answers well (kb/): a bot message
    # with this code, shown in each reader's language like the system lines.
    "bot_handoff": gettext_noop(
        "I'm not sure I can answer that well. Let me find a person to help you."
    ),
}


def english(code: str, **params: str) -> str:
    """The sentence as `body` stores it."""
    return SENTENCES[code] % params


def sentence(code: str, params: dict | None, body: str) -> str:
    """The message in the active language; `body` when the code is not one of ours (a
    row from before codes, or from a newer server)."""
    if code not in SENTENCES:
        return body
    try:
        return gettext(SENTENCES[code]) % (params or {})
    except (KeyError, TypeError, ValueError):
        return body


# The sentences as regular expressions, to give stored rows from before codes theirs.
_PATTERNS = [
    (
        code,
        re.compile(
            re.escape(text)
            .replace(re.escape("%(name)s"), "(?P<name>.+)")
            .replace(re.escape("%(duration)s"), "(?P<duration>[0-9:]+)")
            + r"\Z"
        ),
    )
    for code, text in SENTENCES.items()
]


def recognise(body: str) -> tuple[str, dict] | None:
    """The code and parameters of a stored English system sentence, or None."""
    for code, pattern in _PATTERNS:
        if match := pattern.match(body):
            return code, match.groupdict()
    return None
