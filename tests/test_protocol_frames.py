"""chat/protocol/inbound.py against what the consumers do without it: every inbound frame type,
valid and invalid, decoded by the typed schemas and by json.loads plus the hand
validators of chat/protocol.py, called in the dispatchers' order (chat/consumers.py:
VisitorConsumer.hello and .handle, AgentConsumer.handle). Both must accept the same
values, or refuse with the same (code, detail, client_msg_id). Then the schemas against
docs/protocol.md. No database and no sockets."""

import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from chat import protocol
from chat.protocol import BAD_FRAME, ProtocolError
from chat.protocol import inbound as frames
from tests import frames_reference as reference

# --- today: the dispatchers' reading of each frame, in their order ---------------------


def today_hello(text: str | None) -> tuple[str, dict[str, Any]]:
    frame = reference.parse_frame(text, protocol.VISITOR_FRAME_TYPES)
    if frame["type"] != "hello":
        raise ProtocolError(BAD_FRAME, "The first frame must be hello.")
    values = {
        "site_key": reference.string(frame, "site_key", max_length=64),
        "visitor_token": reference.string(frame, "visitor_token", max_length=128),
        "last_seq": reference.non_negative_int(frame, "last_seq", default=0),
    }
    try:
        values["page"], values["timezone"] = reference.page_report(frame)
    except ProtocolError:
        values["page"] = values["timezone"] = None
    return "hello", values


def today_visitor(text: str | None, *, sneak_peek: bool) -> tuple[str, dict[str, Any]]:
    frame = reference.parse_frame(text, protocol.VISITOR_FRAME_TYPES)
    kind = frame["type"]
    values: dict[str, Any] = {}
    if kind == "message.send":
        msg_id = values["client_msg_id"] = reference.client_msg_id(frame)
        attachment = values["attachment"] = reference.attachment_id(frame, msg_id)
        values["body"] = reference.message_body(frame, msg_id, may_be_empty=attachment is not None)
    elif kind == "typing":
        active = values["active"] = reference.boolean(frame, "active")
        values["text"] = reference.typing_draft(frame) if sneak_peek and active else None
    elif kind == "read":
        values["seq"] = reference.non_negative_int(frame, "seq")
    elif kind == "rating":
        values["score"] = reference.rating_score(frame)
        values["comment"] = reference.rating_comment(frame)
    elif kind == "page.view":
        values["page"], values["timezone"] = reference.page_report(frame)
    elif kind == "transcript.email":
        values["email"] = reference.email_address(frame)
    elif kind in ("call.accept", "call.decline", "call.end"):
        values["call_id"] = reference.call_id(frame)
    elif kind == "call.signal":
        values["call_id"] = reference.call_id(frame)
        values["data"] = reference.call_signal_data(frame)
    elif kind == "bot.feedback":
        values["seq"] = reference.non_negative_int(frame, "seq")
        values["helpful"] = reference.boolean(frame, "helpful")
    elif kind == "hello":
        raise ProtocolError(BAD_FRAME, "hello was already received.")
    return kind, values


def today_agent(text: str | None) -> tuple[str, dict[str, Any]]:
    frame = reference.parse_frame(text, protocol.AGENT_FRAME_TYPES)
    kind = frame["type"]
    values: dict[str, Any] = {}
    if kind in ("message.send", "note.send"):
        msg_id = values["client_msg_id"] = reference.client_msg_id(frame)
        values["conversation"] = reference.conversation_id(frame)
        if kind == "message.send":
            attachment = values["attachment"] = reference.attachment_id(frame, msg_id)
            values["body"] = reference.message_body(
                frame, msg_id, may_be_empty=attachment is not None
            )
        else:
            values["body"] = reference.message_body(frame, msg_id)
    elif kind == "typing":
        values["conversation"] = reference.conversation_id(frame)
        values["active"] = reference.boolean(frame, "active")
    elif kind == "read":
        values["conversation"] = reference.conversation_id(frame)
        values["seq"] = reference.non_negative_int(frame, "seq")
    elif kind == "sync":
        values["conversation"] = reference.conversation_id(frame)
        values["after_seq"] = reference.non_negative_int(frame, "after_seq", default=0)
    elif kind == "presence":
        values["status"] = reference.presence_status(frame)
    elif kind == "conversation.transfer":
        values["conversation"] = reference.conversation_id(frame)
        values["to_agent"] = reference.optional_agent_id(frame, "to_agent")
    elif kind in (
        "conversation.close",
        "visitor.profile",
        "conversation.history",
        "conversation.take",
    ):
        values["conversation"] = reference.conversation_id(frame)
    elif kind == "canned.create":
        values["shortcut"] = reference.text(frame, "shortcut")
        values["body"] = reference.text(frame, "body")
        values["shared"] = reference.boolean(frame, "shared") if "shared" in frame else False
    elif kind == "canned.update":
        values["id"] = reference.canned_response_id(frame)
        values["shortcut"] = reference.text(frame, "shortcut")
        values["body"] = reference.text(frame, "body")
    elif kind == "canned.delete":
        values["id"] = reference.canned_response_id(frame)
    elif kind == "ping":
        values["idle_seconds"] = reference.idle_seconds(frame)
    elif kind == "call.invite":
        values["conversation"] = reference.conversation_id(frame)
        values["media"] = reference.call_media(frame)
    elif kind == "call.end":
        values["call_id"] = reference.call_id(frame)
    elif kind == "call.signal":
        values["call_id"] = reference.call_id(frame)
        values["data"] = reference.call_signal_data(frame)
    return kind, values


def decoded(frame: frames.Frame) -> tuple[str, dict[str, Any]]:
    values = msgspec.structs.asdict(frame)
    if isinstance(values.get("page"), frames.Page):
        values["page"] = values["page"].as_dict()
    return frames.frame_type(frame), values


def new_hello(text: str | None) -> tuple[str, dict[str, Any]]:
    return decoded(frames.decode_hello(text))


def new_visitor(text: str | None, *, sneak_peek: bool) -> tuple[str, dict[str, Any]]:
    return decoded(frames.decode_visitor(text, sneak_peek=sneak_peek))


def new_agent(text: str | None) -> tuple[str, dict[str, Any]]:
    return decoded(frames.decode_agent(text))


def canonical(value: Any) -> Any:
    """A value compared by type as well: True is not 1, 1.0 is not 1, -0.0 is not 0.0."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    return (type(value).__name__, repr(value))


def outcome(decode: Callable[[str | None], tuple[str, dict]], text: str | None) -> tuple:
    try:
        kind, values = decode(text)
    except ProtocolError as exc:
        return ("refused", exc.code, exc.detail, exc.client_msg_id)
    page = values.get("page")
    if isinstance(page, dict):
        # A page is its url, title and referrer (chat/visitor_context.clean_page reads
        # nothing else); the schema drops any other key.
        values["page"] = {name: page.get(name) for name in ("url", "title", "referrer")}
    return ("accepted", kind, canonical(values))


SIDES: dict[str, tuple[Callable, Callable]] = {
    "hello": (today_hello, new_hello),
    "visitor": (
        lambda t: today_visitor(t, sneak_peek=False),
        lambda t: new_visitor(t, sneak_peek=False),
    ),
    "visitor+sneak-peek": (
        lambda t: today_visitor(t, sneak_peek=True),
        lambda t: new_visitor(t, sneak_peek=True),
    ),
    "agent": (today_agent, new_agent),
}


# --- the corpus --------------------------------------------------------------------------

MISSING = object()


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


IDS = [1, 2, 42, 10**20, 0, -1, -(10**20), True, False, 1.0, 2.5, 1e20, "1", "", None, [], {}]
NON_NEGATIVE = [0, 3, 10**30, -1, True, False, 0.0, 3.0, -0.5, "3", None, [3], {}]
SHORT_STRINGS = ["k", "😀", " ", "\u0000", "", 5, None, True, [], {}]


def strings_up_to(limit: int) -> list[Any]:
    return [*SHORT_STRINGS, "x" * limit, "x" * (limit + 1), "😀" * limit, "é" * (limit + 1)]


BODIES = [
    "hi",
    "  Where is my parcel?\n",
    "",
    "   ",
    "\u3000\u00a0\n\t",
    "\u2028x\u2029",
    "x" * 10_000,
    " " + "x" * 10_000 + " ",
    "x" * 10_001,
    "😀" * 10_000,
    "😀" * 10_001,
    "<b>{}</b> [[[[[[[[[[]]]]]]]]]] {{{{{{{{{{}}}}}}}}}}",
    'say "[[[[[[[[[" or \\" {{{{{{{{{ \\\\',
    5,
    None,
    True,
    [],
    {},
]
PAGES = [
    None,
    {},
    {"url": "https://shop.example/p", "title": "Moka", "referrer": ""},
    {"url": None, "title": None, "referrer": None},
    {"url": "https://shop.example/p", "x": [1, {"y": 2}]},
    {"url": 5},
    {"title": []},
    {"referrer": True},
    {"referrer": 5, "url": 5},
    {"url": {"a": 1}},
    {"url": nested(6)},
    {"url": nested(7)},
    [],
    "https://shop.example",
    5,
    True,
]
# `call.signal` data: what browsers send (SDP, ICE candidates), the 16 KiB edge (10
# bytes of {"sdp":""} around the text; é is two bytes), and what is not an object.
SIGNALS = [
    {"type": "offer", "sdp": "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\n"},
    {"candidate": {"candidate": "candidate:1 1 udp 2122260223 10.0.0.2 53421 typ host"}},
    {"candidate": None},
    {},
    {"sdp": "x" * 16374},
    {"sdp": "x" * 16375},
    {"sdp": "é" * 8187},
    {"sdp": "é" * 8188},
    {"sdp": "\u0000"},
    {"sdp": 5, "n": [1, 2.5, True, None]},
    {"deep": nested(5)},
    {"deep": nested(6)},
    [],
    "offer",
    5,
    None,
    True,
]
POOLS: dict[str, list[Any]] = {
    "client_msg_id": strings_up_to(64),
    "conversation": IDS,
    "attachment": IDS,
    "id": IDS,
    "to_agent": IDS,
    "seq": NON_NEGATIVE,
    "after_seq": NON_NEGATIVE,
    "last_seq": NON_NEGATIVE,
    "score": [1, 3, 5, 0, 6, -1, True, 4.0, "4", None, []],
    "body": BODIES,
    "active": [True, False, 0, 1, "true", None, []],
    "helpful": [True, False, 0, 1, "true", None, []],
    "shared": [True, False, 0, 1, "false", None, {}],
    "text": ["", "draft", "x" * 1000, "x" * 1001, "😀" * 1000, "😀" * 1001, " " * 1001, 5, None],
    "status": ["available", "away", "Available", "busy", "", None, 1, ["away"]],
    "comment": ["", "ok", " ok ", None, "x" * 2000, f" {'x' * 2000} ", "x" * 2001, 5, True, []],
    "shortcut": ["refund", " /Refund", "", 5, None, [], {}],
    "idle_seconds": [
        0,
        0.0,
        -0.0,
        0.1,
        640,
        1.5e-300,
        999_999_999,
        999_999_999.9999,
        1e9,
        10**30,
        -0.1,
        -1,
        float("nan"),
        float("inf"),
        float("-inf"),
        True,
        "5",
        None,
        [],
    ],
    "call_id": IDS,
    "media": ["audio", "video", "Audio", "screen", "", None, 1, ["video"]],
    "data": SIGNALS,
    "site_key": strings_up_to(64),
    "visitor_token": strings_up_to(128),
    "page": PAGES,
    "timezone": [None, "Europe/Oslo", "", "x" * 300, 5, True, [], {}],
    "email": [
        "dana@example.com",
        " dana@example.com\n",
        "",
        "dana",
        "a@b",
        "a@b.co",
        "a" * 245 + "@b.example",
        "a" * 244 + "@b.example",
        "dana@exa mple.com",
        "dána@example.com",
        "dana@例え.jp",
        5,
        None,
        True,
        [],
    ],
}
VALID = {
    "hello": {"site_key": "K", "visitor_token": "T", "last_seq": 2},
    "visitor:message.send": {"client_msg_id": "c-1", "body": "Where is my parcel?"},
    "visitor:typing": {"active": True, "text": "Where is my order 10"},
    "visitor:read": {"seq": 3},
    "visitor:conversation.close": {},
    "visitor:ping": {},
    "visitor:rating": {"score": 4, "comment": "Quick and friendly."},
    "visitor:page.view": {"page": PAGES[2], "timezone": "Europe/Oslo"},
    "visitor:transcript.email": {"email": "dana@example.com"},
    "visitor:handoff": {},
    "visitor:bot.feedback": {"seq": 3, "helpful": True},
    "agent:presence": {"status": "available"},
    "agent:message.send": {"conversation": 42, "client_msg_id": "a-7", "body": "It left."},
    "agent:note.send": {"conversation": 42, "client_msg_id": "n-7", "body": "Refund approved."},
    "agent:typing": {"conversation": 42, "active": True},
    "agent:read": {"conversation": 42, "seq": 3},
    "agent:sync": {"conversation": 42, "after_seq": 1},
    "agent:conversation.close": {"conversation": 42},
    "agent:conversation.transfer": {"conversation": 42, "to_agent": 7},
    "agent:agents.list": {},
    "agent:visitor.profile": {"conversation": 42},
    "agent:conversation.history": {"conversation": 31},
    "agent:canned.list": {},
    "agent:canned.create": {"shortcut": "refund", "body": "On its way.", "shared": True},
    "agent:canned.update": {"id": 9, "shortcut": "refund", "body": "On its way."},
    "agent:canned.delete": {"id": 9},
    "agent:queue.list": {},
    "agent:conversation.take": {"conversation": 52},
    "agent:ping": {"idle_seconds": 640},
    "visitor:call.accept": {"call_id": 12},
    "visitor:call.decline": {"call_id": 12},
    "visitor:call.signal": {"call_id": 12, "data": SIGNALS[0]},
    "visitor:call.end": {"call_id": 12},
    "agent:call.invite": {"conversation": 42, "media": "video"},
    "agent:call.signal": {"call_id": 12, "data": SIGNALS[1]},
    "agent:call.end": {"call_id": 12},
}
# Fields a frame type does not have, each read by some other type, a few nested deep
# enough to be refused (depth 9 with the frame) or just not (depth 8).
EXTRAS = [
    ("conversation", "x"),
    ("client_msg_id", 5),
    ("attachment", 17),
    ("x", None),
    ("x", nested(7)),
    ("x", nested(8)),
    ("x", {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}),
    ("x", {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}),
    ("x", float("nan")),
    ("x", 10**4000),
]


def dumps(frame: dict[str, Any], rng: random.Random) -> str:
    items = list(frame.items())
    rng.shuffle(items)
    separators = rng.choice([(",", ":"), (", ", ": ")])
    return json.dumps(dict(items), ensure_ascii=rng.random() < 0.5, separators=separators)


def generated(seed: int, per_type: int = 150) -> Iterator[str]:
    """For every frame type: each field of a valid frame given each value of its pool in
    turn, then random frames (each field from its pool or left out, plus random extra
    fields); serialized with random key order, spacing and escaping."""
    rng = random.Random(seed)
    for key, valid in VALID.items():
        frame_type = key.rpartition(":")[2]
        fields = list(valid)
        if frame_type == "hello":
            fields += ["page", "timezone"]
        elif frame_type == "message.send":
            fields.append("attachment")
        candidates = [
            {**valid, name: value} for name in fields for value in [MISSING, *POOLS[name]]
        ]
        for _ in range(per_type):
            # Half the fields valid, so that later fields are reached too.
            frame = {
                name: valid.get(name, MISSING)
                if rng.random() < 0.5
                else rng.choice([MISSING, *POOLS[name]])
                for name in fields
            }
            for name, value in rng.sample(EXTRAS, rng.choice([0, 0, 1, 2])):
                frame.setdefault(name, value)
            candidates.append(frame)
        for candidate in candidates:
            frame = {"type": frame_type} | {k: v for k, v in candidate.items() if v is not MISSING}
            yield dumps(frame, rng)


def number_spellings(seed: int, count: int = 1500) -> Iterator[str]:
    """Agent pings whose idle_seconds is a random JSON number: up to 25 significant
    digits, with or without a fraction and an exponent, so that msgspec's float parser
    is held to float()'s correctly rounded value (json.loads uses float())."""
    rng = random.Random(seed)
    digits = "0123456789"
    for _ in range(count):
        whole = str(rng.randrange(10 ** rng.randint(1, 10)))
        number = rng.choice(["", "", "", "-"]) + whole
        if rng.random() < 0.7:
            number += "." + "".join(rng.choices(digits, k=rng.randint(1, 25)))
        if rng.random() < 0.4:
            number += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randint(0, 30))
        yield f'{{"type":"ping","idle_seconds":{number}}}'


# Texts the generator cannot write: what json.dumps refuses or never does, duplicate keys,
# escapes, number spellings, the structural refusals.
HAND_WRITTEN = [
    None,
    "",
    " ",
    "null",
    "[]",
    '[{"type": "ping"}]',
    "1",
    '"ping"',
    "{}",
    '{"type": 5}',
    '{"type": null}',
    '{"type": ["ping"]}',
    '{"type": "Ping"}',
    '{"type": "' + "x" * 60 + '"}',
    '{"type": "ünknown-' + "ü" * 50 + '"}',
    '{"type": "ping"} x',
    '{"type": "ping"}\x0c',
    '\ufeff{"type": "ping"}',
    '{"type": "ping",}',
    "{'type': 'ping'}",
    '{"type": "ping", "x": NaN}',
    '{"type": "ping", "x": -Infinity}',
    '{"type": "ping", "idle_seconds": NaN}',
    '{"type": "ping", "idle_seconds": Infinity}',
    '{"type": "ping", "idle_seconds": 1e400}',
    '{"type": "ping", "idle_seconds": -0}',
    '{"type": "ping", "idle_seconds": 64E1}',
    '{"type": "ping", "idle_seconds": 0.1}',
    '{"type": "ping", "idle_seconds": 1.7976931348623157e308}',
    '{"type": "ping", "idle_seconds": 5e-324}',
    '{"type": "ping", "idle_seconds": 2.2250738585072011e-308}',
    '{"type": "read", "seq": 3.0}',
    '{"type": "read", "seq": 3e0}',
    '{"type": "read", "seq": -0}',
    '{"type": "read", "seq": 03}',
    '{"type": "read", "seq": 0x3}',
    '{"type": "read", "seq": ' + "9" * 4300 + "}",
    '{"type": "read", "seq": ' + "9" * 4301 + "}",
    '{"type": "read", "seq": ' + "9" * 5000 + "}",
    '{"type": "read", "seq": 3, "x": ' + "9" * 4301 + "}",
    '{"type": "read", "seq": 3, "x": -' + "9" * 5000 + "}",
    '{"type": "read", "seq": 3, "x": ' + "9" * 5000 + ".5}",
    '{"type": "read", "seq": 3, "x": 1e' + "0" * 5000 + "}",
    '{"type": "read", "seq": 3, "x": "' + "9" * 5000 + '"}',
    '{"type": "read", "seq": 3, "x": "' + ("9" * 4300 + " ") * 3 + '"}',
    '{"type": "read", "seq": 1, "seq": 2}',
    '{"type": "read", "seq": "x", "seq": 2}',
    '{"type": "read", "seq": 2, "seq": "x"}',
    '{"type": "ping", "type": "read", "seq": 1}',
    '{"type": "read", "seq": 1, "type": "ping"}',
    '{"type": "read", "typ\\u0065": "ping", "seq": 1}',
    '{"typ\\u0065": "read", "s\\u0065q": 1}',
    '{"type": "re\\u0061d", "seq": 1}',
    '{"type": "read", "seq": 1, "x": "\\ud800"}',
    '{"type": "read", "seq": 1, "\\udc00": 1}',
    '{"type": "read", "seq": 1, "x": "\\ud83d\\ude00"}',
    '{"type": "read", "seq": 1, "x": "a\x01b"}',
    '{"type": "read", "seq": 1, "\ud800": "a lone surrogate in the text itself"}',
    '{"type": "read", "seq": 1, "x": "\\u0000\\/\\b\\f"}',
    '{"type": "read", "seq": 1, "x": "\x7f"}',
    '{"type": "read", "seq": 1, "x": "\\x"}',
    '{"type": "read", "seq": 1, "x": tru}',
    '{"type": "read", "seq": 1, "x": [1, 2,]}',
    '{"type": "read", "seq": 1, "x": "unterminated}',
    '{"type": "read", "seq": 1, "x": ' + "[" * 30_000 + "]" * 30_000 + "}",
    "[" * 30_000 + "]" * 30_000,
    '{"type": "read", "seq": 1, "x": ' + "[" * 7 + "]" * 7 + "}",
    '{"type": "read", "seq": 1, "x": ' + "[" * 8 + "]" * 8 + "}",
    '{"type": "read", "seq": 1, "x": "' + "[" * 20 + '"}',
    '{"type": "read", "seq": 1, "x": ["[[[[[[[[[[", "{{{{{{{{{{"]}',
    '{"type": "read", "seq": 1, "x": "\\"[[[[[[[[[[\\\\"}',
    '{"type": "read", "seq": 1, "x": "\\"[[[[[[[[[", "y": "]]]]]]]]]\\\\"}',
    '{"type": "read", "seq": 1, "x": "\\\\", "y": [[[[[[[[1]]]]]]]]}',
    '{"type": "read", "seq": 1, "x": "\\\\\\"", "y": [[[[[[[[1]]]]]]]]}',
    '{"type": "read", "seq": [[[[[[[[1]]]]]]]]}',
    '{"type": "read", "seq": [[[[[[[1]]]]]]]}',
    '{"type": "read", "seq": 1, "x": ' + '{"a": ' * 8 + "1" + "}" * 8 + "}",
    '{"type": "read", "seq": 1, "x": ' + '{"a": ' * 7 + "1" + "}" * 7 + "}",
    '{"type": "hello", "site_key": "K", "visitor_token": "T", "page": {"url": '
    + "[" * 7
    + "]" * 7
    + "}}",
    '{"type": "hello", "site_key": "K", "visitor_token": "T", "page": {"url": '
    + "[" * 6
    + "]" * 6
    + "}}",
    '{"type": "hello", "site_key": "K", "visitor_token": "T", "timezone": NaN}',
    '{"type": "hello", "site_key": "K", "visitor_token": "T", "page": {"url": "\\ud800"}}',
    '{"type": "hello", "site_key": "K", "visitor_token": "T", "last_seq": 1, "last_seq": -1}',
    '{"type": "hello", "visitor_token": "T", "site_key": 5}',
    '{"type": "message.send", "client_msg_id": "c", "body": "\\ud83d\\ude00 hi \\u00e9"}',
    '{"type": "message.send", "client_msg_id": "c", "body": "\\ud800"}',
    '{"type": "message.send", "client_msg_id": "c", "body": "", "attachment": 17}',
    '{"type": "message.send", "client_msg_id": "c", "body": null, "attachment": 17}',
    '{"type": "message.send", "body": 5, "client_msg_id": ""}',
    '{"type": "message.send", "body": "", "attachment": 0, "client_msg_id": "c"}',
    '{"type": "message.send", "client_msg_id": "c", "body": "", "x": ' + "[" * 9 + "]" * 9 + "}",
    '{"type": "message.send", "client_msg_id": "c", "body": "hi", "conversation": 0}',
    '{"type": "message.send", "conversation": 0, "client_msg_id": 5}',
    '{"type": "message.send", "conversation": true, "client_msg_id": "c", "body": "hi"}',
    '{"type": "note.send", "conversation": 1, "client_msg_id": "c", "attachment": 17}',
    '{"type": "note.send", "conversation": 1, "client_msg_id": "c", "body": " ", "attachment": 1}',
    '{"type": "typing", "text": "' + "x" * 1001 + '", "active": true}',
    '{"type": "typing", "text": 5, "active": false}',
    '{"type": "typing", "text": 5, "active": 1}',
    '{"type": "typing", "conversation": 1, "active": true, "text": 5}',
    '{"type": "rating", "score": 4, "comment": "' + " " * 3000 + '"}',
    '{"type": "page.view", "timezone": 5, "page": {"referrer": 5, "url": 5}}',
    '{"type": "page.view", "page": {"url": "u", "url": 5}}',
    '{"type": "transcript.email", "email": "dana@example.com", "email": 5}',
    '{"type": "conversation.transfer", "conversation": 42}',
    '{"type": "conversation.transfer", "to_agent": null, "conversation": 42}',
    '{"type": "conversation.transfer", "to_agent": 0, "conversation": 0}',
    '{"type": "canned.create", "body": "b", "shortcut": "s", "shared": null}',
    '{"type": "canned.create", "shared": 1, "body": 5, "shortcut": 5}',
    '{"type": "canned.update", "body": "b", "shortcut": "s"}',
    '{"type": "presence", "status": "av\\u0061ilable"}',
    '{"type": "agents.list", "conversation": "x"}',
]


def corpus(texts: list[str | None]) -> list[tuple[str, str | None]]:
    """Every text on every side: a visitor frame to an agent socket is refused there."""
    return [(side, text) for text in texts for side in SIDES]


CORPUS = corpus([*HAND_WRITTEN, *generated(seed=20261207), *number_spellings(seed=20261207)])


def mismatches(cases: list[tuple[str, str | None]]) -> tuple[list[str], dict[str, int]]:
    found, counts = [], {"accepted": 0, "refused": 0}
    for side, text in cases:
        today, new = (outcome(decode, text) for decode in SIDES[side])
        counts[today[0]] += 1
        if today != new:
            found.append(f"{side} {text!r:.300}\n  today: {today!r:.300}\n  new:   {new!r:.300}")
    return found, counts


# --- the differential tests --------------------------------------------------------------


def test_the_corpus_has_every_frame_type_accepted_and_refused_on_every_side():
    seen: dict[tuple[str, str], set[str]] = {}
    for side, text in CORPUS:
        try:
            frame_type = json.loads(text)["type"]
        except (TypeError, ValueError, RecursionError, KeyError):
            continue
        if not isinstance(frame_type, str):
            continue
        seen.setdefault((side, frame_type), set()).add(outcome(SIDES[side][0], text)[0])
    expected = {"accepted", "refused"}
    for side, schemas in [
        ("hello", {"hello": frames.Hello}),
        ("visitor", frames.VISITOR_SCHEMAS),
        ("visitor+sneak-peek", frames.VISITOR_SCHEMAS),
        ("agent", frames.AGENT_SCHEMAS),
    ]:
        for frame_type in schemas:
            if side.startswith("visitor") and frame_type == "hello":
                assert seen[side, frame_type] == {"refused"}  # a second hello, always
            else:
                # Frames without fields are refused too: nested too deeply, a long number.
                assert seen[side, frame_type] == expected, (side, frame_type)


def test_typed_frames_accept_and_refuse_exactly_as_the_hand_validators():
    found, counts = mismatches(CORPUS)

    assert counts["accepted"] > 2000 and counts["refused"] > 2000, counts
    assert not found, f"{len(found)} of {len(CORPUS)} differ:\n" + "\n".join(found[:15])


def test_the_slow_path_alone_also_decides_exactly_as_the_hand_validators(monkeypatch):
    # Every frame msgspec accepts normally skips the slow path; it must be right on its
    # own, should a msgspec release refuse what it takes today.
    monkeypatch.setattr(frames, "_decoded_fast", lambda decoder, text: None)

    found, _counts = mismatches(CORPUS)

    assert not found, f"{len(found)} of {len(CORPUS)} differ:\n" + "\n".join(found[:15])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_more_random_frames_decide_the_same(seed):
    cases = corpus(list(generated(seed, per_type=100)))

    found, _counts = mismatches(cases)

    assert not found, f"{len(found)} of {len(cases)} differ:\n" + "\n".join(found[:15])


# --- behaviours worth a name (each also in the corpus) -----------------------------------


def refusal(decode: Callable[[], Any]) -> tuple[str, str, str | None]:
    with pytest.raises(ProtocolError) as caught:
        decode()
    return caught.value.code, caught.value.detail, caught.value.client_msg_id


def test_a_message_body_is_trimmed_and_may_be_empty_only_with_an_attachment():
    with_attachment = frames.decode_visitor(
        '{"type":"message.send","client_msg_id":"c","attachment":17}', sneak_peek=False
    )
    trimmed = frames.decode_agent(
        '{"type":"message.send","conversation":4,"client_msg_id":"c","body":" hi\\n"}'
    )

    assert (with_attachment.attachment, with_attachment.body) == (17, "")
    assert trimmed.body == "hi"
    assert refusal(
        lambda: frames.decode_visitor(
            '{"type":"message.send","client_msg_id":"c","body":" "}', sneak_peek=False
        )
    ) == (BAD_FRAME, "body is empty.", "c")


def test_the_first_failing_field_in_reading_order_decides_not_the_first_in_the_text():
    text = '{"type":"message.send","body":5,"attachment":0,"conversation":0,"client_msg_id":"c"}'

    assert refusal(lambda: frames.decode_agent(text)) == (
        BAD_FRAME,
        "conversation must be a conversation id.",
        None,  # conversation's refusal never carried the client_msg_id
    )


def test_a_json_true_is_never_an_id_or_a_seq():
    assert refusal(lambda: frames.decode_agent('{"type":"read","conversation":1,"seq":true}')) == (
        BAD_FRAME,
        "seq must be a non-negative integer.",
        None,
    )


def test_a_visitor_draft_is_read_only_with_sneak_peek_and_while_typing():
    text = '{"type":"typing","active":true,"text":"' + "x" * 1001 + '"}'

    assert frames.decode_visitor(text, sneak_peek=False).text is None
    assert frames.decode_visitor(
        '{"type":"typing","active":false,"text":5}', sneak_peek=True
    ) == frames.VisitorTyping(active=False, text=None)
    assert refusal(lambda: frames.decode_visitor(text, sneak_peek=True)) == (
        "too_long",
        "text is over 1000 characters.",
        None,
    )


def test_a_malformed_context_is_ignored_in_hello_but_refused_in_page_view():
    fields = '"page":{"url":5},"timezone":"Europe/Oslo"'

    hello = frames.decode_hello(
        '{"type":"hello","site_key":"K","visitor_token":"T",' + fields + "}"
    )

    assert (hello.site_key, hello.page, hello.timezone) == ("K", None, None)
    assert refusal(
        lambda: frames.decode_visitor('{"type":"page.view",' + fields + "}", sneak_peek=False)
    ) == (BAD_FRAME, "page.url must be a string or null.", None)


def test_a_second_hello_is_refused_whatever_it_holds():
    for text in ['{"type":"hello"}', '{"type":"hello","site_key":"K","visitor_token":"T"}']:
        assert refusal(lambda t=text: frames.decode_visitor(t, sneak_peek=True)) == (
            BAD_FRAME,
            "hello was already received.",
            None,
        )


def test_an_unknown_type_is_named_in_at_most_40_characters():
    _code, detail, _ = refusal(lambda: frames.decode_agent('{"type":"' + "x" * 100 + '"}'))

    assert detail == f"Unknown frame type '{'x' * 40}'."


def test_what_json_loads_refuses_and_msgspec_would_skip_is_still_refused():
    deep = '{"type":"ping","x":' + "[" * 8 + "]" * 8 + "}"
    long_number = '{"type":"ping","x":' + "9" * 4301 + "}"

    assert refusal(lambda: frames.decode_agent(deep))[1] == "Frame is nested too deeply."
    assert refusal(lambda: frames.decode_agent(long_number))[1] == "Frame is not valid JSON."


def test_the_fast_paths_depth_check_agrees_with_the_depth_json_loads_and_protocol_see():
    # A scan that says "not too deep" wrongly would let the fast path accept a frame
    # that is refused; a wrong "too deep" only costs the slow path, so compare exactly.
    compared = 0
    for text in {text for _side, text in CORPUS}:
        try:
            msgspec.json.decode(text)  # what the fast path has read before it asks
            value = json.loads(text)
        except (TypeError, ValueError, RecursionError, UnicodeEncodeError):
            continue  # msgspec.DecodeError is a ValueError
        if not isinstance(value, dict):
            continue  # the fast path has read a frame: an object
        deep = reference._depth(value, protocol.MAX_JSON_DEPTH) > protocol.MAX_JSON_DEPTH
        assert frames._nested_too_deeply(text) == deep, text[:300]
        compared += 1
    assert compared > 1000


def test_what_json_loads_accepts_and_msgspec_refuses_is_still_accepted():
    # NaN and lone surrogates are JSON to json.loads, not to msgspec: ignored fields.
    text = '{"type":"ping","x":NaN,"y":"\\ud800"}'

    assert frames.decode_visitor(text, sneak_peek=False) == frames.VisitorPing()


def test_each_side_has_a_schema_for_each_of_its_frame_types_and_no_more():
    assert set(frames.VISITOR_SCHEMAS) == protocol.VISITOR_FRAME_TYPES
    assert set(frames.AGENT_SCHEMAS) == protocol.AGENT_FRAME_TYPES
    for schemas in (frames.VISITOR_SCHEMAS, frames.AGENT_SCHEMAS):
        for frame_type, schema in schemas.items():
            assert schema.__struct_config__.tag == frame_type


def test_every_field_a_schema_can_refuse_has_its_wording():
    for schema in [*frames.VISITOR_SCHEMAS.values(), *frames.AGENT_SCHEMAS.values()]:
        for field in msgspec.structs.fields(schema):
            assert field.encode_name in frames.FIELD_ERRORS, (schema, field.name)
    for field in msgspec.structs.fields(frames.Page):
        assert f"page.{field.name}" in frames.FIELD_ERRORS


# --- the schemas against docs/protocol.md ------------------------------------------------

PROTOCOL_DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def doc_section(heading: str) -> str:
    """The text under `heading` (a whole line) up to the next heading of its level or
    higher."""
    text = PROTOCOL_DOC.read_text()
    level = heading.split(" ")[0]
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    following = re.compile(rf"^#{{1,{len(level)}}} ", re.MULTILINE)
    end = following.search(text, start)
    return text[start : end.start() if end else len(text)]


def client_frames_in_doc(side: str) -> dict[str, set[str]]:
    """Frame type → the fields its row in the doc's "<side> → server" table shows."""
    table = doc_section(f"### {side} → server")
    documented: dict[str, set[str]] = {}
    for row in re.findall(r"^\| `(\{.*?\})`", table, re.MULTILINE):
        frame_type = re.match(r'\{"type":"([^"]+)"', row).group(1)
        documented[frame_type] = set(re.findall(r'"(\w+)":', row)) - {"type"}
    return documented


def json_examples(section: str) -> Iterator[dict[str, Any]]:
    for block in re.findall(r"```json\n(.*?)```", section, re.DOTALL):
        try:
            yield json.loads(block)
        except ValueError:  # several one-line frames in one block
            yield from (json.loads(line) for line in block.splitlines() if line.strip())


SOCKETS = [
    ("Visitor", "## Visitor socket (`/ws/visitor/`)", frames.VISITOR_SCHEMAS),
    ("Agent", "## Agent socket (`/ws/agent/`)", frames.AGENT_SCHEMAS),
]


@pytest.mark.parametrize(("side", "heading", "schemas"), SOCKETS, ids=["visitor", "agent"])
def test_every_client_frame_in_the_doc_has_a_schema_and_every_schema_is_documented(
    side, heading, schemas
):
    documented = client_frames_in_doc(side)

    assert set(documented) == set(schemas)


@pytest.mark.parametrize(("side", "heading", "schemas"), SOCKETS, ids=["visitor", "agent"])
def test_the_fields_the_doc_shows_are_the_schemas_fields_and_each_field_is_documented(
    side, heading, schemas
):
    section = doc_section(heading)
    for frame_type, fields in client_frames_in_doc(side).items():
        declared = {f.encode_name for f in msgspec.structs.fields(schemas[frame_type])}
        assert fields <= declared, frame_type
        for name in declared:
            assert f'"{name}"' in section or f"`{name}`" in section, (frame_type, name)


@pytest.mark.parametrize(("side", "heading", "schemas"), SOCKETS, ids=["visitor", "agent"])
def test_every_client_frame_has_an_example_in_the_doc_and_each_example_decodes(
    side, heading, schemas
):
    examples = [e for e in json_examples(doc_section(heading)) if e.get("type") in schemas]
    for example in examples:
        text = json.dumps(example)
        if example["type"] == "hello":
            frame = frames.decode_hello(text)
        elif side == "Visitor":
            frame = frames.decode_visitor(text, sneak_peek=True)
        else:
            frame = frames.decode_agent(text)
        assert frames.frame_type(frame) == example["type"]

    assert {e["type"] for e in examples} == set(schemas)


def test_each_socket_has_one_handler_for_every_frame_schema_of_its_side():
    from chat.transport.consumers import AgentConsumer, VisitorConsumer

    # `hello` opens the visitor socket; every other visitor frame has its handler.
    assert set(VisitorConsumer.handlers) == set(frames.VISITOR_SCHEMAS.values()) - {frames.Hello}
    assert set(AgentConsumer.handlers) == set(frames.AGENT_SCHEMAS.values())
