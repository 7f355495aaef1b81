"""Inbound WebSocket frames as typed schemas (one msgspec Struct per frame type and side)
and the decoders that turn a text frame into one of them, or into today's refusal.

msgspec rather than pydantic (or hand validators), by measurement: docs/performance.md,
change 17.

How a frame is decoded. The fast path is msgspec's typed decode of the whole text; when
it succeeds (and the text could not hold what the standard library refuses and msgspec
skips: nesting past `MAX_JSON_DEPTH`, an integer past Python's digit limit) that is the
frame. Anything else goes the slow path, which decides as the consumers did before these
schemas: `json.loads`, then object, depth, `type`, then each field in the order it is
declared (the order the dispatchers read them, so the first failing field decides, not
the first one in the text), each refused with its entry in `FIELD_ERRORS`. Refusals are
rare, so only the slow path has to know every rule of the refusal's wording.

Where the rules live: a field's shape (JSON type, range, length) is its annotation; what
is refused as `too_long` or `bad_email`, and what depends on another field (a body may be
empty with an attachment), is in `__post_init__` or, for the sneak-peek draft that
depends on the site, in `decode_visitor`.
"""

import functools
import json
import logging
import re
import sys
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args

import msgspec
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from msgspec import UNSET, Meta, Struct, UnsetType

from wording import grouped_number, lazy_format

from . import (
    AGENT_FRAME_TYPES,
    BAD_EMAIL,
    BAD_FRAME,
    MAX_BODY_CHARS,
    MAX_CALL_SIGNAL_BYTES,
    MAX_CLIENT_MSG_ID_CHARS,
    MAX_DRAFT_CHARS,
    MAX_EMAIL_CHARS,
    MAX_JSON_DEPTH,
    MAX_RATING_COMMENT_CHARS,
    TOO_LONG,
    UNSTORABLE_TEXT,
    VISITOR_FRAME_TYPES,
    ProtocolError,
    storable,
)

logger = logging.getLogger(__name__)


def _over(detail: str | Promise, limit: int) -> Promise:
    """A "… is over N characters." refusal, N grouped as the reader's language groups
    digits (10,000; 10.000; 10 000)."""
    return lazy_format(detail, limit=grouped_number(limit))


# Field shapes. A JSON `true` is never an int here (msgspec keeps bool and int apart),
# and a float is never an int.
ClientMsgId = Annotated[str, Meta(min_length=1, max_length=MAX_CLIENT_MSG_ID_CHARS)]
# A conversation, attachment, agent or canned response id.
Id = Annotated[int, Meta(ge=1)]
Seq = Annotated[int, Meta(ge=0)]
Score = Annotated[int, Meta(ge=1, le=5)]
IdleSeconds = Annotated[float, Meta(ge=0, lt=1e9)]
SiteKey = Annotated[str, Meta(min_length=1, max_length=64)]
VisitorToken = Annotated[str, Meta(min_length=1, max_length=128)]


class Frame(Struct, kw_only=True, tag_field="type", gc=False):
    """A client → server frame; the subclass's tag is its `type`. Unknown fields are
    ignored (msgspec's default, `forbid_unknown_fields=False`). No frame holds another
    object than a `Page`, so none is in a reference cycle and `gc=False` is safe."""

    # Fields whose refusal drops them all to their defaults instead of refusing the frame.
    advisory: ClassVar[frozenset[str]] = frozenset()


class Page(Struct, kw_only=True, gc=False):
    """The page a visitor is on (`hello`, `page.view`); other keys of the object are
    dropped (chat/visitor_context.py reads these three only)."""

    url: str | None = None
    title: str | None = None
    referrer: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """What services.report_visitor_context takes as `page`."""
        return msgspec.structs.asdict(self)


# Visitor socket (`/ws/visitor/`).


class Hello(Frame, tag="hello"):
    """The first frame of a visitor socket; any refusal closes it with 4400."""

    site_key: SiteKey
    visitor_token: VisitorToken
    last_seq: Seq = 0
    # (addition) Context for the agent: advisory, so a malformed one is ignored rather
    # than a reason to refuse the hello.
    page: Page | None = None
    timezone: str | None = None

    advisory: ClassVar[frozenset[str]] = frozenset({"page", "timezone"})


class VisitorMessageSend(Frame, tag="message.send"):
    client_msg_id: ClientMsgId
    attachment: Id | None = None
    # Trimmed by __post_init__: always a str once decoded. It may be empty or left out
    # only with an attachment.
    body: str | UnsetType = UNSET

    def __post_init__(self) -> None:
        self.body = _message_body(
            self.body, self.client_msg_id, may_be_empty=self.attachment is not None
        )


class VisitorTyping(Frame, tag="typing"):
    active: bool
    # (addition) The sneak-peek draft. decode_visitor keeps it only when the site has
    # sneak peek and `active` is true (otherwise it is not even checked), else None.
    text: str | None = None


class VisitorRead(Frame, tag="read"):
    seq: Seq


class VisitorConversationClose(Frame, tag="conversation.close"):
    pass


class VisitorPing(Frame, tag="ping"):
    pass


class Rating(Frame, tag="rating"):
    score: Score
    # Trimmed by __post_init__; null or left out is "".
    comment: str | None = ""

    def __post_init__(self) -> None:
        self.comment = _rating_comment(self.comment)


class Handoff(Frame, tag="handoff"):
    """(v1.1) The visitor asks for a person instead of the bot."""


class BotFeedback(Frame, tag="bot.feedback"):
    """(addition) 👍 (`helpful: true`) or 👎 on the bot's answer `seq`."""

    seq: Seq
    helpful: bool


class PageView(Frame, tag="page.view"):
    page: Page | None = None
    timezone: str | None = None


class TranscriptEmail(Frame, tag="transcript.email"):
    # Trimmed and checked by __post_init__: anything but an address is `bad_email`.
    email: str = ""

    def __post_init__(self) -> None:
        self.email = _email_address(self.email)


# Calls (addition; docs/protocol.md "Calls"): signaling only, media flows peer to peer.


class CallAccept(Frame, tag="call.accept"):
    """The visitor takes the call: from now on this tab holds its media."""

    call_id: Id


class CallDecline(Frame, tag="call.decline"):
    call_id: Id


class CallSignal(Frame, tag="call.signal"):
    """An SDP offer or answer, or an ICE candidate, for the other participant's tab:
    relayed as it is, never read. At most MAX_CALL_SIGNAL_BYTES as JSON."""

    call_id: Id
    data: dict[str, Any]

    def __post_init__(self) -> None:
        if len(msgspec.json.encode(self.data)) > MAX_CALL_SIGNAL_BYTES:
            raise ProtocolError(
                TOO_LONG, _over(_("data is over %(limit)s bytes."), MAX_CALL_SIGNAL_BYTES)
            )


class CallEnd(Frame, tag="call.end"):
    call_id: Id


# Agent socket (`/ws/agent/`).


class Presence(Frame, tag="presence"):
    status: Literal["available", "away"]


class AgentMessageSend(Frame, tag="message.send"):
    client_msg_id: ClientMsgId
    conversation: Id
    attachment: Id | None = None
    body: str | UnsetType = UNSET  # as VisitorMessageSend.body

    def __post_init__(self) -> None:
        self.body = _message_body(
            self.body, self.client_msg_id, may_be_empty=self.attachment is not None
        )


class NoteSend(Frame, tag="note.send"):
    client_msg_id: ClientMsgId
    conversation: Id
    body: str  # trimmed by __post_init__; never empty (a note has no attachment)

    def __post_init__(self) -> None:
        self.body = _message_body(self.body, self.client_msg_id, may_be_empty=False)


class AgentTyping(Frame, tag="typing"):
    conversation: Id
    active: bool


class AgentRead(Frame, tag="read"):
    conversation: Id
    seq: Seq


class Sync(Frame, tag="sync"):
    conversation: Id
    after_seq: Seq = 0


class AgentConversationClose(Frame, tag="conversation.close"):
    conversation: Id


class ConversationTransfer(Frame, tag="conversation.transfer"):
    conversation: Id
    to_agent: Id | None  # required: an agent id, or null for the queue


class AgentsList(Frame, tag="agents.list"):
    pass


class VisitorProfile(Frame, tag="visitor.profile"):
    conversation: Id


class ConversationHistory(Frame, tag="conversation.history"):
    conversation: Id


class CannedList(Frame, tag="canned.list"):
    pass


class CannedCreate(Frame, tag="canned.create"):
    # Their content is agents/services.py's to check (bad_shortcut, too_long...).
    shortcut: str
    body: str
    shared: bool = False


class CannedUpdate(Frame, tag="canned.update"):
    id: Id
    shortcut: str
    body: str


class CannedDelete(Frame, tag="canned.delete"):
    id: Id


class QueueList(Frame, tag="queue.list"):
    """(addition) Who waits in the queue of the agent's sites."""


class ConversationTake(Frame, tag="conversation.take"):
    """(addition) Take a chat from the queue, where the site allows it."""

    conversation: Id


class AssistSuggest(Frame, tag="assist.suggest"):
    """(addition) Reply suggestions for the visitor's latest message. Answered by the
    capability that registers a handler for it (kb/assist/), else refused."""

    conversation: Id


class CallInvite(Frame, tag="call.invite"):
    """(addition) The agent rings the conversation's visitor."""

    conversation: Id
    media: Literal["audio", "video"]


class AgentPing(Frame, tag="ping"):
    # (addition) Seconds since the agent's last input on the dashboard, if it says.
    idle_seconds: IdleSeconds | None = None


VisitorFrame = (
    Hello
    | VisitorMessageSend
    | VisitorTyping
    | VisitorRead
    | VisitorConversationClose
    | VisitorPing
    | Rating
    | PageView
    | TranscriptEmail
    | CallAccept
    | CallDecline
    | CallSignal
    | CallEnd
    | Handoff
    | BotFeedback
)
AgentFrame = (
    Presence
    | AgentMessageSend
    | NoteSend
    | AgentTyping
    | AgentRead
    | Sync
    | AgentConversationClose
    | ConversationTransfer
    | AgentsList
    | VisitorProfile
    | ConversationHistory
    | CannedList
    | CannedCreate
    | CannedUpdate
    | CannedDelete
    | QueueList
    | ConversationTake
    | AgentPing
    | CallInvite
    | CallSignal
    | CallEnd
    | AssistSuggest
)


def frame_type(frame: Frame) -> str:
    """The wire `type` of a decoded frame."""
    return type(frame).__struct_config__.tag


# Frame type → schema, per side: what the transport builds its table type → (schema,
# handler) from.
VISITOR_SCHEMAS: dict[str, type[Frame]] = {
    s.__struct_config__.tag: s for s in get_args(VisitorFrame)
}
AGENT_SCHEMAS: dict[str, type[Frame]] = {s.__struct_config__.tag: s for s in get_args(AgentFrame)}

# What a field's refusal says, by its path in the frame: (code, detail). A field is
# refused with this when the schema refuses its shape: missing, wrong JSON type, or out
# of range.
FIELD_ERRORS: dict[str, tuple[str, str | Promise]] = {
    "client_msg_id": (
        BAD_FRAME,
        lazy_format(
            _("client_msg_id must be a string of 1-%(limit)s characters."),
            limit=MAX_CLIENT_MSG_ID_CHARS,
        ),
    ),
    "conversation": (BAD_FRAME, _("conversation must be a conversation id.")),
    "attachment": (BAD_FRAME, _("attachment must be an attachment id.")),
    "body": (BAD_FRAME, _("body must be a string.")),
    "seq": (BAD_FRAME, _("seq must be a non-negative integer.")),
    "after_seq": (BAD_FRAME, _("after_seq must be a non-negative integer.")),
    "last_seq": (BAD_FRAME, _("last_seq must be a non-negative integer.")),
    "active": (BAD_FRAME, _("active must be true or false.")),
    "helpful": (BAD_FRAME, _("helpful must be true or false.")),
    "shared": (BAD_FRAME, _("shared must be true or false.")),
    "text": (BAD_FRAME, _("text must be a string.")),
    "status": (BAD_FRAME, _('status must be "available" or "away".')),
    "to_agent": (BAD_FRAME, _("to_agent must be an agent id or null.")),
    "score": (BAD_FRAME, _("score must be a whole number from 1 to 5.")),
    "comment": (BAD_FRAME, _("comment must be a string.")),
    "shortcut": (BAD_FRAME, _("shortcut must be a string.")),
    "id": (BAD_FRAME, _("id must be a canned response id.")),
    "idle_seconds": (BAD_FRAME, _("idle_seconds must be a non-negative number.")),
    "site_key": (BAD_FRAME, _("site_key must be a string of 1-64 characters.")),
    "visitor_token": (BAD_FRAME, _("visitor_token must be a string of 1-128 characters.")),
    "page": (BAD_FRAME, _("page must be an object.")),
    "page.url": (BAD_FRAME, _("page.url must be a string or null.")),
    "page.title": (BAD_FRAME, _("page.title must be a string or null.")),
    "page.referrer": (BAD_FRAME, _("page.referrer must be a string or null.")),
    "timezone": (BAD_FRAME, _("timezone must be a string or null.")),
    "email": (BAD_EMAIL, _("email must be an email address.")),
    "call_id": (BAD_FRAME, _("call_id must be a call id.")),
    "media": (BAD_FRAME, _('media must be "audio" or "video".')),
    "data": (BAD_FRAME, _("data must be an object.")),
}
# The refusals that carry the frame's client_msg_id (once it is known to be valid): a
# client matches them to the message it sent.
_CARRY_CLIENT_MSG_ID = frozenset({"attachment", "body"})


def _refusal(path: str, client_msg_id: str | None = None) -> ProtocolError:
    code, detail = FIELD_ERRORS[path]
    if path not in _CARRY_CLIENT_MSG_ID:
        client_msg_id = None
    return ProtocolError(code, detail, client_msg_id=client_msg_id)


# What the schemas check beyond shape.


def _message_body(value: str | UnsetType, client_msg_id: str, *, may_be_empty: bool) -> str:
    """The trimmed body, 1-10,000 characters; with `may_be_empty` (a message carrying an
    attachment) it may also be empty or left out."""
    if value is UNSET:
        if not may_be_empty:
            raise _refusal("body", client_msg_id)
        return ""
    body = value.strip()
    if not body and not may_be_empty:
        raise ProtocolError(BAD_FRAME, _("body is empty."), client_msg_id=client_msg_id)
    if len(body) > MAX_BODY_CHARS:
        raise ProtocolError(
            TOO_LONG,
            _over(_("body is over %(limit)s characters."), MAX_BODY_CHARS),
            client_msg_id=client_msg_id,
        )
    return body


def _rating_comment(value: str | None) -> str:
    comment = (value or "").strip()
    if len(comment) > MAX_RATING_COMMENT_CHARS:
        raise ProtocolError(
            TOO_LONG, _over(_("comment is over %(limit)s characters."), MAX_RATING_COMMENT_CHARS)
        )
    return comment


def _email_address(value: str) -> str:
    email = value.strip()
    try:
        if len(email) > MAX_EMAIL_CHARS:
            raise ValidationError("too long")
        validate_email(email)
    except ValidationError:
        raise _refusal("email") from None
    return email


def _typing_draft(frame: VisitorTyping, *, sneak_peek: bool) -> str | None:
    """The draft a visitor `typing` frame relays: only on a site with sneak peek, and
    only while typing; the setting, not the widget, decides."""
    if not (sneak_peek and frame.active) or frame.text is None:
        return None
    if len(frame.text) > MAX_DRAFT_CHARS:
        raise ProtocolError(
            TOO_LONG, _over(_("text is over %(limit)s characters."), MAX_DRAFT_CHARS)
        )
    return frame.text


# The decoders.

_VISITOR_DECODER = msgspec.json.Decoder(VisitorFrame)
_AGENT_DECODER = msgspec.json.Decoder(AgentFrame)

S = TypeVar("S", bound=Struct)


def decode_hello(text: str | None) -> Hello:
    """The first frame of a visitor socket, which must be a `hello`. A refusal is meant
    for the log only: the consumer closes the socket with CLOSE_NOT_HELLO."""
    frame = _decoded_fast(_VISITOR_DECODER, text)
    if type(frame) is Hello:
        return frame
    raw = _parsed(text, VISITOR_FRAME_TYPES)
    if raw["type"] != "hello":
        raise ProtocolError(BAD_FRAME, _("The first frame must be hello."))
    return _checked(Hello, raw)


def decode_visitor(text: str | None, *, sneak_peek: bool) -> VisitorFrame:
    """A visitor frame after `hello`; `sneak_peek` is the site's setting as of `hello`."""
    frame = _decoded_fast(_VISITOR_DECODER, text)
    if frame is None:
        raw = _parsed(text, VISITOR_FRAME_TYPES)
        schema = VISITOR_SCHEMAS[raw["type"]]
        if schema is Hello:
            raise ProtocolError(BAD_FRAME, _SECOND_HELLO)  # whatever it holds
        if schema is VisitorTyping and not (sneak_peek and raw.get("active") is True):
            # The draft is dropped unread: not a reason to refuse the typing state.
            raw.pop("text", None)
        frame = _checked(schema, raw)
    elif type(frame) is Hello:
        raise ProtocolError(BAD_FRAME, _SECOND_HELLO)
    if type(frame) is VisitorTyping:
        frame.text = _typing_draft(frame, sneak_peek=sneak_peek)
    return frame


_SECOND_HELLO = _("hello was already received.")


def decode_agent(text: str | None) -> AgentFrame:
    """An agent frame."""
    frame = _decoded_fast(_AGENT_DECODER, text)
    if frame is not None:
        return frame
    raw = _parsed(text, AGENT_FRAME_TYPES)
    return _checked(AGENT_SCHEMAS[raw["type"]], raw)


def _decoded_fast(decoder: msgspec.json.Decoder, text: str | None) -> Any:
    """The frame msgspec decodes from `text`, or None when the slow path must decide:
    the text is refused, or it may hold what json.loads refuses and msgspec skips."""
    if text is None or "\\u0000" in text or "\\ud" in text or "\\uD" in text:
        return None  # it may spell text that cannot be stored: the slow path checks
    try:
        frame = decoder.decode(text)
        if _nested_too_deeply(text) or _has_long_integer(text):
            return None
    except (msgspec.DecodeError, ProtocolError, RecursionError, UnicodeEncodeError):
        # DecodeError includes ValidationError. A ProtocolError comes from a
        # __post_init__, which runs before the checks above could say the frame is too
        # deep: the slow path keeps the order.
        return None
    return frame


def _nested_too_deeply(text: str) -> bool:
    """Whether `text`, an object msgspec has read, nests objects and arrays more than
    MAX_JSON_DEPTH deep (the frame itself is level 1)."""
    first = text.find("{")
    if text.find("[") < 0 and text.find("{", first + 1) < 0:
        return False  # nothing nested: nearly every frame, for three memchr calls
    return _deeper_than(msgspec.json.decode(text), MAX_JSON_DEPTH)


def _deeper_than(container: dict | list, levels: int) -> bool:
    """Whether `container` holds more than `levels` levels of objects and arrays, itself
    included; it looks no deeper than that."""
    if levels <= 0:
        return True
    for value in container.values() if type(container) is dict else container:
        if type(value) in (dict, list) and _deeper_than(value, levels - 1):
            return True
    return False


def _has_long_integer(text: str) -> bool:
    """Whether `text` may have an integer json.loads refuses (sys.set_int_max_str_digits,
    4,300 digits by default) where msgspec skips it (an unknown field)."""
    limit = sys.get_int_max_str_digits()
    return 0 < limit < len(text) and _digit_run(limit).search(text) is not None


@functools.cache
def _digit_run(limit: int) -> re.Pattern[str]:
    # The lookbehind starts a match only at the first digit of a run, so the search is
    # linear, not quadratic, in a frame full of long runs.
    return re.compile(rf"(?<![0-9])[0-9]{{{limit + 1}}}")


def _parsed(text: str | None, allowed_types: frozenset[str]) -> dict[str, Any]:
    """One text frame decoded by the standard library into a JSON object with a known
    `type`, refused as the consumers always have. json.loads defines which texts are
    JSON (it takes NaN and Infinity; msgspec does not)."""
    if text is None:
        raise ProtocolError(BAD_FRAME, _("Frames must be text, not binary."))
    try:
        frame = json.loads(text)
    except ValueError:
        raise ProtocolError(BAD_FRAME, _("Frame is not valid JSON.")) from None
    except RecursionError:
        # `[[[[...` a few thousand deep fits in 64 KiB and exhausts the parser's stack
        # before MAX_JSON_DEPTH can be checked.
        raise ProtocolError(BAD_FRAME, _("Frame is nested too deeply.")) from None
    if not isinstance(frame, dict):
        raise ProtocolError(BAD_FRAME, _("Frame must be a JSON object."))
    if _deeper_than(frame, MAX_JSON_DEPTH):
        raise ProtocolError(BAD_FRAME, _("Frame is nested too deeply."))
    frame_type = frame.get("type")
    if not isinstance(frame_type, str):
        raise ProtocolError(BAD_FRAME, _('Frame needs a string "type".'))
    if frame_type not in allowed_types:
        raise ProtocolError(
            BAD_FRAME, lazy_format(_("Unknown frame type %(type)s."), type=repr(frame_type[:40]))
        )
    return frame


@dataclass(frozen=True)
class _Field:
    name: str  # as on the wire; no inbound field needs renaming
    alone: type[Struct]  # a Struct of this field only, to check its value
    required: bool
    nested: type[Struct] | None  # the Struct of an object-valued field (`page`)


@functools.cache
def _fields(schema: type[Struct]) -> tuple[_Field, ...]:
    fields = []
    for info in msgspec.structs.fields(schema):
        nested = next(
            (t for t in get_args(info.type) if isinstance(t, type) and issubclass(t, Struct)),
            None,
        )
        # msgspec keeps what it learns of a Struct type; of a bare annotation, it learns
        # it again on every convert, which takes twice as long.
        alone = msgspec.defstruct(f"{schema.__name__}_{info.name}", [(info.name, info.type)])
        fields.append(_Field(info.encode_name, alone, info.required, nested))
    return tuple(fields)


def _checked(schema: type[S], raw: dict[str, Any], prefix: str = "") -> S:
    """`raw` (a JSON object) as a `schema`, its fields checked in their declared order:
    the first one refused decides the error, as in the dispatchers before the schemas."""
    advisory = getattr(schema, "advisory", frozenset())
    values: dict[str, Any] = {}
    for field in _fields(schema):
        if field.name not in advisory:
            _check_field(field, raw, values, prefix)
    context: dict[str, Any] = {}
    try:
        for field in _fields(schema):
            if field.name in advisory:
                _check_field(field, raw, context, prefix)
    except ProtocolError as exc:
        logger.info("visitor hello: context ignored: %s", exc.detail)
        context = {}
    return schema(**values, **context)


def _check_field(field: _Field, raw: dict[str, Any], values: dict[str, Any], prefix: str) -> None:
    path = prefix + field.name
    if field.name not in raw:
        if field.required:
            raise _refusal(path, values.get("client_msg_id"))
        return  # the default
    value = raw[field.name]
    if field.nested is not None and isinstance(value, dict):
        values[field.name] = _checked(field.nested, value, prefix=f"{path}.")
        return
    try:
        checked = msgspec.convert({field.name: value}, field.alone, strict=True)
    except msgspec.ValidationError:
        raise _refusal(path, values.get("client_msg_id")) from None
    if not storable(value):
        refusal = _refusal(path, values.get("client_msg_id"))
        raise ProtocolError(
            BAD_FRAME, lazy_format(UNSTORABLE_TEXT, field=path), client_msg_id=refusal.client_msg_id
        )
    values[field.name] = getattr(checked, field.name)
