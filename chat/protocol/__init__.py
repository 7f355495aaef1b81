"""The wire contract in code: limits, error and close codes, the socket's flood bucket.

With `inbound` (one schema per client frame), `outbound` (one constructor per server
frame) and `errors` (domain refusals to error codes), the twin of docs/protocol.md;
change them together.
"""

import re
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from ..models import Message
from . import outbound

MAX_FRAME_BYTES = 64 * 1024
MAX_BODY_CHARS = Message.MAX_BODY_CHARS
MAX_CLIENT_MSG_ID_CHARS = 64
MAX_JSON_DEPTH = 8

# Close codes. Daphne lets an application send only 1000 and 3000-4999, so the
# contract mirrors 1009/1008 as 4009/4008.
CLOSE_NOT_HELLO = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_RATE_LIMITED = 4008
CLOSE_TOO_BIG = 4009
# The database or Redis could not be reached, or the worker lost Redis for a while and
# the socket may have missed events: reconnect with backoff and resume by seq.
CLOSE_UNAVAILABLE = 4503

# Error codes carried by {"type": "error"} frames.
BAD_FRAME = "bad_frame"
TOO_LONG = "too_long"
RATE_LIMITED = "rate_limited"
FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"
CONVERSATION_CLOSED = "conversation_closed"
UNAVAILABLE = "unavailable"
AGENT_UNAVAILABLE = "agent_unavailable"
ALREADY_RATED = "already_rated"
# `transcript.email` (addition) with something that is not an email address.
BAD_EMAIL = "bad_email"
MAX_EMAIL_CHARS = 254
# The sentences beside the codes the transport refuses with itself (lazy: written out in
# the socket's language, `ProtocolError.frame`).
TOO_MANY_MESSAGES_TEXT = _("Too many messages; slow down.")
TOO_MANY_TRANSCRIPTS_TEXT = _("Too many transcripts asked for; try again later.")
TRANSCRIPT_NOT_MAILED_TEXT = _("The transcript could not be mailed; try again later.")
TOO_MANY_CALLS_TEXT = _("Too many calls in this chat; try later.")
TOO_MANY_SIGNALS_TEXT = _("Too many call signals.")
# Canned responses (agents/services.py): a shortcut outside the model's pattern, one
# already taken among the same owner's, or an agent at the cap of own snippets.
BAD_SHORTCUT = "bad_shortcut"
DUPLICATE_SHORTCUT = "duplicate_shortcut"
TOO_MANY = "too_many"
MAX_RATING_COMMENT_CHARS = 2000
# Calls (addition): an invitation into a conversation that has a call already.
CALL_IN_PROGRESS = "call_in_progress"
# The `data` of a `call.signal` (an SDP offer or answer, an ICE candidate), as JSON.
MAX_CALL_SIGNAL_BYTES = 16 * 1024
# Sneak peek (addition): a visitor `typing` frame may carry the unsent draft, this long at most.
MAX_DRAFT_CHARS = 1000

VISITOR_FRAME_TYPES = frozenset(
    {
        "hello",
        "message.send",
        "typing",
        "read",
        "conversation.close",
        "ping",
        "rating",
        "page.view",
        "transcript.email",
        "call.accept",
        "call.decline",
        "call.signal",
        "call.end",
        "handoff",
        "bot.feedback",
    }
)
AGENT_FRAME_TYPES = frozenset(
    {
        "presence",
        "message.send",
        "note.send",
        "conversation.transfer",
        "agents.list",
        "visitor.profile",
        "conversation.history",
        "canned.list",
        "canned.create",
        "canned.update",
        "canned.delete",
        "queue.list",
        "conversation.take",
        "typing",
        "read",
        "sync",
        "conversation.close",
        "ping",
        "call.invite",
        "call.signal",
        "call.end",
        "assist.suggest",
    }
)
PRESENCE_STATUSES = ("available", "away")


# Text PostgreSQL cannot store: NUL, and a surrogate left unpaired (JSON can spell both,
# as \u0000 and \ud800). Refused wherever a client's text may be stored.
_UNPAIRED_SURROGATE = re.compile("[\ud800-\udfff]")
UNSTORABLE_TEXT = _("%(field)s must not contain NUL characters or unpaired surrogates.")


def storable(value: Any) -> bool:
    """Whether every string in `value` (a JSON value: keys and items too) can be stored."""
    if isinstance(value, str):
        return "\x00" not in value and (value.isascii() or not _UNPAIRED_SURROGATE.search(value))
    if isinstance(value, dict):
        return all(storable(key) and storable(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return all(storable(item) for item in value)
    return True


class ProtocolError(Exception):
    """A frame the contract refuses; answered with an `error` frame to its sender.

    `code` is the contract's and never changes with the language; `detail`, the sentence
    a person reads beside it, may be lazy (gettext_lazy, wording.lazy_format) and is
    written out in the language of the socket it goes to."""

    def __init__(self, code: str, detail: str | Promise, *, client_msg_id: str | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.client_msg_id = client_msg_id

    def frame(self, language: str | None = None) -> dict[str, Any]:
        """The `error` frame, its detail in `language` (None: English, as the contract's
        examples)."""
        with translation.override(language):
            detail = str(self.detail)
        return outbound.error(code=self.code, detail=detail, client_msg_id=self.client_msg_id)


_ENCODER = msgspec.json.Encoder()


def encode(frame: dict[str, Any]) -> str:
    """One frame as the text of a WebSocket message: compact JSON, UTF-8 as it is (every
    frame sent is encoded here: msgspec takes a tenth of json.dumps's time)."""
    return _ENCODER.encode(frame).decode()


@dataclass
class TokenBucket:
    """Per-socket flood control: `burst` frames at once, refilled at `rate` per second."""

    burst: int
    rate: float
    tokens: float = field(init=False)
    updated: float = field(init=False)
    refused_in_a_row: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.refused_in_a_row = 0
            return True
        self.refused_in_a_row += 1
        return False


# Ten refused frames in a row close the socket with CLOSE_RATE_LIMITED.
RATE_LIMIT_CLOSE_AFTER = 10
