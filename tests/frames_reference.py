"""The hand validators the consumers used before the typed schemas
(chat/protocol/inbound.py), kept as the reference those are held to: the same frames
accepted with the same values, the same refusals with the same words
(tests/test_protocol_frames.py; bench/frame_decoding.py measures both)."""

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from chat.protocol import (
    BAD_EMAIL,
    BAD_FRAME,
    MAX_BODY_CHARS,
    MAX_CALL_SIGNAL_BYTES,
    MAX_CLIENT_MSG_ID_CHARS,
    MAX_DRAFT_CHARS,
    MAX_EMAIL_CHARS,
    MAX_JSON_DEPTH,
    MAX_RATING_COMMENT_CHARS,
    PRESENCE_STATUSES,
    TOO_LONG,
    UNSTORABLE_TEXT,
    ProtocolError,
    storable,
)


def _depth(value: Any, limit: int) -> int:
    if limit < 0:
        return 1
    if isinstance(value, dict):
        return 1 + max((_depth(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v, limit - 1) for v in value), default=0)
    return 0


def parse_frame(text: str | None, allowed_types: frozenset[str]) -> dict[str, Any]:
    """Decode one text frame into a JSON object with a known `type`."""
    if text is None:
        raise ProtocolError(BAD_FRAME, "Frames must be text, not binary.")
    try:
        frame = json.loads(text)
    except ValueError:
        raise ProtocolError(BAD_FRAME, "Frame is not valid JSON.") from None
    except RecursionError:
        # `[[[[...` a few thousand deep fits in 64 KiB and exhausts the parser's stack
        # before MAX_JSON_DEPTH can be checked.
        raise ProtocolError(BAD_FRAME, "Frame is nested too deeply.") from None
    if not isinstance(frame, dict):
        raise ProtocolError(BAD_FRAME, "Frame must be a JSON object.")
    if _depth(frame, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ProtocolError(BAD_FRAME, "Frame is nested too deeply.")
    frame_type = frame.get("type")
    if not isinstance(frame_type, str):
        raise ProtocolError(BAD_FRAME, 'Frame needs a string "type".')
    if frame_type not in allowed_types:
        raise ProtocolError(BAD_FRAME, f"Unknown frame type {frame_type[:40]!r}.")
    return frame


def _refuse_unstorable(name: str, value: Any, msg_id: str | None = None) -> None:
    """Text PostgreSQL cannot store (NUL, an unpaired surrogate): refused by name."""
    if not storable(value):
        raise ProtocolError(BAD_FRAME, UNSTORABLE_TEXT % {"field": name}, client_msg_id=msg_id)


def client_msg_id(frame: dict[str, Any]) -> str:
    value = frame.get("client_msg_id")
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CLIENT_MSG_ID_CHARS:
        raise ProtocolError(
            BAD_FRAME, f"client_msg_id must be a string of 1-{MAX_CLIENT_MSG_ID_CHARS} characters."
        )
    _refuse_unstorable("client_msg_id", value)
    return value


def message_body(frame: dict[str, Any], msg_id: str, *, may_be_empty: bool = False) -> str:
    """The trimmed body, 1-10,000 characters; with `may_be_empty` (a message carrying an
    attachment) it may also be empty or left out."""
    value = frame.get("body", "" if may_be_empty else None)
    if not isinstance(value, str):
        raise ProtocolError(BAD_FRAME, "body must be a string.", client_msg_id=msg_id)
    _refuse_unstorable("body", value, msg_id)
    body = value.strip()
    if not body and not may_be_empty:
        raise ProtocolError(BAD_FRAME, "body is empty.", client_msg_id=msg_id)
    if len(body) > MAX_BODY_CHARS:
        raise ProtocolError(
            TOO_LONG, f"body is over {MAX_BODY_CHARS} characters.", client_msg_id=msg_id
        )
    return body


def attachment_id(frame: dict[str, Any], msg_id: str) -> int | None:
    """(addition) The optional `attachment` of a `message.send`: an upload's id, or None."""
    value = frame.get("attachment")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ProtocolError(BAD_FRAME, "attachment must be an attachment id.", client_msg_id=msg_id)
    return value


def non_negative_int(frame: dict[str, Any], name: str, *, default: int | None = None) -> int:
    value = frame.get(name, default)
    # bool is an int in Python; the contract means a JSON number.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(BAD_FRAME, f"{name} must be a non-negative integer.")
    return value


def conversation_id(frame: dict[str, Any]) -> int:
    value = frame.get("conversation")
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ProtocolError(BAD_FRAME, "conversation must be a conversation id.")
    return value


def optional_agent_id(frame: dict[str, Any], name: str) -> int | None:
    """A required key whose value is an agent id or null."""
    if name not in frame:
        raise ProtocolError(BAD_FRAME, f"{name} must be an agent id or null.")
    value = frame[name]
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ProtocolError(BAD_FRAME, f"{name} must be an agent id or null.")
    return value


def rating_score(frame: dict[str, Any]) -> int:
    value = frame.get("score")
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 5:
        raise ProtocolError(BAD_FRAME, "score must be a whole number from 1 to 5.")
    return value


def rating_comment(frame: dict[str, Any]) -> str:
    value = frame.get("comment", "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProtocolError(BAD_FRAME, "comment must be a string.")
    _refuse_unstorable("comment", value)
    comment = value.strip()
    if len(comment) > MAX_RATING_COMMENT_CHARS:
        raise ProtocolError(TOO_LONG, f"comment is over {MAX_RATING_COMMENT_CHARS} characters.")
    return comment


def boolean(frame: dict[str, Any], name: str) -> bool:
    value = frame.get(name)
    if not isinstance(value, bool):
        raise ProtocolError(BAD_FRAME, f"{name} must be true or false.")
    return value


def string(frame: dict[str, Any], name: str, *, max_length: int = 200) -> str:
    value = frame.get(name)
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        raise ProtocolError(BAD_FRAME, f"{name} must be a string of 1-{max_length} characters.")
    _refuse_unstorable(name, value)
    return value


def text(frame: dict[str, Any], name: str) -> str:
    """A required string field whose content a service checks (canned responses)."""
    value = frame.get(name)
    if not isinstance(value, str):
        raise ProtocolError(BAD_FRAME, f"{name} must be a string.")
    _refuse_unstorable(name, value)
    return value


def canned_response_id(frame: dict[str, Any]) -> int:
    value = frame.get("id")
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ProtocolError(BAD_FRAME, "id must be a canned response id.")
    return value


def typing_draft(frame: dict[str, Any]) -> str | None:
    """The optional `text` of a visitor `typing` frame (sneak peek): the draft, or None."""
    value = frame.get("text")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(BAD_FRAME, "text must be a string.")
    _refuse_unstorable("text", value)
    if len(value) > MAX_DRAFT_CHARS:
        raise ProtocolError(TOO_LONG, f"text is over {MAX_DRAFT_CHARS} characters.")
    return value


def idle_seconds(frame: dict[str, Any]) -> float | None:
    """The optional `idle_seconds` of an agent `ping`: seconds since the agent's last
    input on the dashboard, or None when the dashboard does not say."""
    value = frame.get("idle_seconds")
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1e9:
        raise ProtocolError(BAD_FRAME, "idle_seconds must be a non-negative number.")
    return float(value)


def page_report(frame: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(`page`, `timezone`) of a `page.view` or `hello` (addition), shape checked only:
    `page` an object whose `url`, `title`, `referrer` are strings or null, `timezone` a
    string or null. What the values may be is chat/visitor_context.py's business (a
    value it refuses is dropped, not answered)."""
    page = frame.get("page")
    if page is not None:
        if not isinstance(page, dict):
            raise ProtocolError(BAD_FRAME, "page must be an object.")
        for name in ("url", "title", "referrer"):
            if not isinstance(page.get(name), (str, type(None))):
                raise ProtocolError(BAD_FRAME, f"page.{name} must be a string or null.")
            _refuse_unstorable(f"page.{name}", page.get(name))
    timezone = frame.get("timezone")
    if not isinstance(timezone, (str, type(None))):
        raise ProtocolError(BAD_FRAME, "timezone must be a string or null.")
    _refuse_unstorable("timezone", timezone)
    return page, timezone


def email_address(frame: dict[str, Any]) -> str:
    """The `email` of a `transcript.email` (addition), trimmed; else `bad_email`."""
    value = frame.get("email")
    if isinstance(value, str):
        _refuse_unstorable("email", value)
    email = value.strip() if isinstance(value, str) else ""
    try:
        if len(email) > MAX_EMAIL_CHARS:
            raise ValidationError("too long")
        validate_email(email)
    except ValidationError:
        raise ProtocolError(BAD_EMAIL, "email must be an email address.") from None
    return email


def presence_status(frame: dict[str, Any]) -> str:
    value = frame.get("status")
    if value not in PRESENCE_STATUSES:
        raise ProtocolError(BAD_FRAME, 'status must be "available" or "away".')
    return value


def call_id(frame: dict[str, Any]) -> int:
    """(addition) The `call_id` of a call frame."""
    value = frame.get("call_id")
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ProtocolError(BAD_FRAME, "call_id must be a call id.")
    return value


def call_media(frame: dict[str, Any]) -> str:
    value = frame.get("media")
    if value not in ("audio", "video"):
        raise ProtocolError(BAD_FRAME, 'media must be "audio" or "video".')
    return value


def call_signal_data(frame: dict[str, Any]) -> dict[str, Any]:
    """The `data` of a `call.signal`: any JSON object up to MAX_CALL_SIGNAL_BYTES as
    compact UTF-8 JSON, relayed as it is."""
    value = frame.get("data")
    if not isinstance(value, dict):
        raise ProtocolError(BAD_FRAME, "data must be an object.")
    _refuse_unstorable("data", value)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_CALL_SIGNAL_BYTES:
        raise ProtocolError(TOO_LONG, f"data is over {MAX_CALL_SIGNAL_BYTES} bytes.")
    return value
