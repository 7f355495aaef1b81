"""Decode + validate one inbound frame, three ways, in one process: the hand validators
(json.loads, reference.parse_frame and the dispatchers' calls), chat/protocol/inbound.py (msgspec),
and the same schemas in pydantic v2 (a TypeAdapter over a discriminated union).

    DJANGO_SETTINGS_MODULE=supportdesk.settings .venv/bin/python -m bench.frame_decoding

pydantic is not a dependency of the project: without it that column is left out
(`pip install pydantic==2.14.4` to see it). Results: docs/performance.md, change 17.
Every round runs every candidate on every frame once, so load from other processes
spreads over all of them; min and median are over the rounds.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from typing import Annotated, Any, Literal

import django

django.setup()

from chat import protocol  # noqa: E402
from chat.protocol import inbound as frames  # noqa: E402
from tests import frames_reference as reference  # noqa: E402

# What each dispatcher reads today, in order (chat/consumers.py before the schemas).


def today_visitor(text: str, sneak_peek: bool = True) -> tuple:
    frame = reference.parse_frame(text, protocol.VISITOR_FRAME_TYPES)
    kind = frame["type"]
    if kind == "message.send":
        msg_id = reference.client_msg_id(frame)
        attachment = reference.attachment_id(frame, msg_id)
        body = reference.message_body(frame, msg_id, may_be_empty=attachment is not None)
        return msg_id, attachment, body
    if kind == "typing":
        active = reference.boolean(frame, "active")
        text = reference.typing_draft(frame) if sneak_peek and active else None
        return active, text
    if kind == "read":
        return (reference.non_negative_int(frame, "seq"),)
    if kind == "ping":
        return ()
    raise AssertionError(kind)


def today_agent(text: str) -> tuple:
    frame = reference.parse_frame(text, protocol.AGENT_FRAME_TYPES)
    kind = frame["type"]
    if kind == "message.send":
        msg_id = reference.client_msg_id(frame)
        conversation = reference.conversation_id(frame)
        attachment = reference.attachment_id(frame, msg_id)
        body = reference.message_body(frame, msg_id, may_be_empty=attachment is not None)
        return msg_id, conversation, attachment, body
    if kind == "read":
        return reference.conversation_id(frame), reference.non_negative_int(frame, "seq")
    if kind == "typing":
        return reference.conversation_id(frame), reference.boolean(frame, "active")
    if kind == "ping":
        return (reference.idle_seconds(frame),)
    raise AssertionError(kind)


def pydantic_decoders() -> tuple[Callable, Callable] | None:
    """decode_visitor and decode_agent with pydantic models of the same schemas: strict
    (no bool as int, no "1" as 1), extra fields ignored, the body trimmed and checked by
    an after-validator like msgspec's __post_init__, and the same guards before it is
    trusted (depth, long integers) as chat/protocol/inbound.py."""
    try:
        from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
    except ImportError:
        return None

    cid = Annotated[str, Field(min_length=1, max_length=64)]
    pos = Annotated[int, Field(ge=1)]
    non_negative = Annotated[int, Field(ge=0)]

    class Model(BaseModel):
        model_config = ConfigDict(strict=True, extra="ignore")

    def checked_body(model: Any) -> Any:
        if model.body is None:
            if model.attachment is None:
                raise ValueError("body must be a string.")
            model.body = ""
            return model
        model.body = model.body.strip()
        if not model.body and model.attachment is None:
            raise ValueError("body is empty.")
        if len(model.body) > protocol.MAX_BODY_CHARS:
            raise ValueError("body is over 10000 characters.")
        return model

    class Page(Model):
        url: str | None = None
        title: str | None = None
        referrer: str | None = None

    class Hello(Model):
        type: Literal["hello"]
        site_key: Annotated[str, Field(min_length=1, max_length=64)]
        visitor_token: Annotated[str, Field(min_length=1, max_length=128)]
        last_seq: non_negative = 0
        page: Page | None = None
        timezone: str | None = None

    class VisitorMessageSend(Model):
        type: Literal["message.send"]
        client_msg_id: cid
        attachment: pos | None = None
        body: str | None = None
        _body = model_validator(mode="after")(checked_body)

    class VisitorTyping(Model):
        type: Literal["typing"]
        active: bool
        text: str | None = None

    class VisitorRead(Model):
        type: Literal["read"]
        seq: non_negative

    class Empty(Model):
        type: Literal["agents.list", "canned.list"]

    class Rating(Model):
        type: Literal["rating"]
        score: Annotated[int, Field(ge=1, le=5)]
        comment: str | None = ""

    class PageView(Model):
        type: Literal["page.view"]
        page: Page | None = None
        timezone: str | None = None

    class TranscriptEmail(Model):
        type: Literal["transcript.email"]
        email: str = ""

    class Presence(Model):
        type: Literal["presence"]
        status: Literal["available", "away"]

    class AgentMessageSend(Model):
        type: Literal["message.send"]
        client_msg_id: cid
        conversation: pos
        attachment: pos | None = None
        body: str | None = None
        _body = model_validator(mode="after")(checked_body)

    class NoteSend(Model):
        type: Literal["note.send"]
        client_msg_id: cid
        conversation: pos
        body: str

    class AgentTyping(Model):
        type: Literal["typing"]
        conversation: pos
        active: bool

    class AgentRead(Model):
        type: Literal["read"]
        conversation: pos
        seq: non_negative

    class Sync(Model):
        type: Literal["sync"]
        conversation: pos
        after_seq: non_negative = 0

    class OneConversation(Model):
        type: Literal["conversation.close", "visitor.profile", "conversation.history"]
        conversation: pos

    class ConversationTransfer(Model):
        type: Literal["conversation.transfer"]
        conversation: pos
        to_agent: pos | None

    class CannedCreate(Model):
        type: Literal["canned.create"]
        shortcut: str
        body: str
        shared: bool = False

    class CannedUpdate(Model):
        type: Literal["canned.update"]
        id: pos
        shortcut: str
        body: str

    class CannedDelete(Model):
        type: Literal["canned.delete"]
        id: pos

    class AgentPing(Model):
        type: Literal["ping"]
        idle_seconds: Annotated[float, Field(ge=0, lt=1e9)] | None = None

    class VisitorEmpty(Model):
        type: Literal["conversation.close", "ping"]

    visitor = TypeAdapter(
        Annotated[
            Hello
            | VisitorMessageSend
            | VisitorTyping
            | VisitorRead
            | VisitorEmpty
            | Rating
            | PageView
            | TranscriptEmail,
            Field(discriminator="type"),
        ]
    )
    agent = TypeAdapter(
        Annotated[
            Presence
            | AgentMessageSend
            | NoteSend
            | AgentTyping
            | AgentRead
            | Sync
            | OneConversation
            | ConversationTransfer
            | Empty
            | CannedCreate
            | CannedUpdate
            | CannedDelete
            | AgentPing,
            Field(discriminator="type"),
        ]
    )

    def guarded(adapter: Any) -> Callable:
        def decode(text: str) -> Any:
            frame = adapter.validate_json(text)
            if frames._nested_too_deeply(text) or frames._has_long_integer(text):
                raise AssertionError("not measured")
            return frame

        return decode

    return guarded(visitor), guarded(agent)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def refusing(decode: Callable[[str], Any]) -> Callable[[str], Any]:
    """`decode`, answering a refusal with its exception instead of raising it."""

    def decode_or_refuse(text: str) -> Any:
        try:
            return decode(text)
        except (protocol.ProtocolError, ValueError) as exc:  # pydantic's ValidationError
            return exc

    return decode_or_refuse


def corpus() -> dict[str, tuple[str, str]]:
    """Frame label → (side, text)."""
    short = "Where is my parcel? It was due on Monday."
    accented = "Où est mon colis ? Il devait arriver lundi 😀 — merci !"
    long_body = ("My order 1042 arrived with a cracked lid; photos attached. " * 40)[:2000]
    snippet = (
        "Try this in the console:\nfetch('/api/orders/1042').then(r => r.json())"
        ".then(o => { console.log(o.items[0], o.items[1]); if (o.state) { show(o); } })"
        "\nconst ids = [[1, 2], [3, 4]].map(([a, b]) => ({ a, b }));\n"
        '// {"ok": true, "items": [{"sku": "MOKA-3"}]}'
    )
    snippet = (snippet + " " * 300)[:300]
    return {
        "visitor message.send, 41-char body": (
            "visitor",
            f'{{"type":"message.send","client_msg_id":"c-1732540623402-3","body":"{short}"}}',
        ),
        "visitor message.send, 55-char non-ASCII body": (
            "visitor",
            f'{{"type":"message.send","client_msg_id":"c-1732540623402-4","body":"{accented}"}}',
        ),
        "visitor message.send, 2,000-char body": (
            "visitor",
            f'{{"type":"message.send","client_msg_id":"c-1732540623402-5","body":"{long_body}"}}',
        ),
        "agent message.send, 300-char code snippet (24 brackets)": (
            "agent",
            '{"type":"message.send","conversation":42,"client_msg_id":"a-7-1732540700001",'
            f'"body":{json.dumps(snippet)}}}',
        ),
        "visitor message.send, blank body (refused)": (
            "visitor",
            '{"type":"message.send","client_msg_id":"c-1732540623402-6","body":"  "}',
        ),
        "agent message.send, 41-char body": (
            "agent",
            '{"type":"message.send","conversation":42,"client_msg_id":"a-7-1732540700000",'
            f'"body":"{short}"}}',
        ),
        "visitor typing with a draft": (
            "visitor",
            '{"type":"typing","active":true,"text":"Where is my order 10"}',
        ),
        "visitor read": ("visitor", '{"type":"read","seq":3}'),
        "agent read": ("agent", '{"type":"read","conversation":42,"seq":3}'),
        "agent ping with idle_seconds": ("agent", '{"type":"ping","idle_seconds":640}'),
        "visitor ping": ("visitor", '{"type":"ping"}'),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--seconds", type=float, default=0.02, help="per run, roughly")
    args = parser.parse_args()

    candidates: dict[str, dict[str, Callable[[str], Any]]] = {
        "today": {"visitor": today_visitor, "agent": today_agent},
        "msgspec": {
            "visitor": lambda text: frames.decode_visitor(text, sneak_peek=True),
            "agent": frames.decode_agent,
        },
    }
    candidates["msgspec Decoder.decode alone"] = {
        "visitor": frames._VISITOR_DECODER.decode,
        "agent": frames._AGENT_DECODER.decode,
    }
    decoders = pydantic_decoders()
    if decoders is not None:
        candidates["pydantic"] = {"visitor": decoders[0], "agent": decoders[1]}

    cases = corpus()
    timers: dict[tuple[str, str], tuple[timeit.Timer, int]] = {}
    for label, (side, text) in cases.items():
        for name, decode in candidates.items():
            run = refusing(decode[side])
            timer = timeit.Timer(lambda run=run, text=text: run(text))
            number, _ = timer.autorange()
            number = max(1, int(number * args.seconds / 0.2))
            timers[label, name] = timer, number

    samples: dict[tuple[str, str], list[float]] = {key: [] for key in timers}
    for _ in range(args.rounds):
        for key, (timer, number) in timers.items():
            samples[key].append(timer.timeit(number) / number * 1e9)

    versions = {"python": platform.python_version()}
    import msgspec

    versions["msgspec"] = msgspec.__version__
    if decoders is not None:
        import pydantic

        versions["pydantic"] = pydantic.VERSION
    print(f"# {cpu_model()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {versions}")
    print(f"# ns per frame over {args.rounds} rounds: min / median")
    names = list(candidates)
    header = " | ".join(f"{n} min / median" for n in names)
    print(f"| frame | {header} |")
    print("|---|" + "---|" * len(names))
    for label in cases:
        cells = []
        for name in names:
            runs = samples[label, name]
            cells.append(f"{min(runs):,.0f} / {statistics.median(runs):,.0f}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
