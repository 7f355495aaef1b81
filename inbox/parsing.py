"""One inbound mail, read with the standard library: who wrote it, what it answers, its
text (the plain part, else the HTML part made text; quoted history and signature cut
off), its attachments, whether it is an automatic mail (an auto-reply, a bounce, a
list's), and whether the upstream server vouched for its sender (SPF/DKIM).

Nothing here touches the database: `receiving` decides what a parsed mail does.
"""

import html
import re
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import Address
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser

from chat import protocol

# Local parts that only machines write from: their mail is never a visitor's.
MACHINE_SENDERS = ("mailer-daemon", "postmaster", "noreply", "no-reply", "bounce", "bounces")
AUTOMATIC_PRECEDENCE = ("bulk", "junk", "list", "auto_reply")
MAX_ADDRESS_CHARS = 254


class Unreadable(Exception):
    """The mail cannot become a message (no sender, no text); the reason says why."""


@dataclass(frozen=True)
class Attachment:
    name: str
    content: bytes


@dataclass
class ParsedMail:
    sender: str  # the From address, lowercased
    sender_name: str
    from_header: str  # as the agent sees it: "Ann <ann@example.com>"
    subject: str
    message_id: str  # "<...>" or "" when it had none
    in_reply_to: list[str]
    references: list[str]
    text: str
    attachments: list[Attachment] = field(default_factory=list)
    automatic: str = ""  # why it is an automatic mail ("" for a person's)
    sender_verified: bool = False


def parse_bytes(
    raw: bytes, *, envelope_sender: str | None = None, authserv_id: str = ""
) -> ParsedMail:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    return parse_message(message, envelope_sender=envelope_sender, authserv_id=authserv_id)


def parse_message(
    message: Message, *, envelope_sender: str | None = None, authserv_id: str = ""
) -> ParsedMail:
    """`envelope_sender`: SMTP's MAIL FROM ("" is a bounce's null sender; None: not
    known, a provider's webhook). `authserv_id`: the upstream server whose
    Authentication-Results are trusted ("" trusts the topmost one, the closest hop)."""
    name, sender = parseaddr(_header(message, "From"))
    sender = sender.strip().lower()
    if "@" not in sender or len(sender) > MAX_ADDRESS_CHARS:
        raise Unreadable("The mail has no sender address (From).")
    name = name.strip()
    try:
        from_header = str(Address(display_name=name, addr_spec=sender)) if name else sender
    except (ValueError, IndexError):
        from_header = sender
    text, attachments = _content(message)
    return ParsedMail(
        sender=sender,
        sender_name=name[:200],
        from_header=from_header[:320],
        subject=" ".join(_header(message, "Subject").split())[:300],
        message_id=next(iter(_ids(_header(message, "Message-ID"))), ""),
        in_reply_to=_ids(_header(message, "In-Reply-To")),
        references=_ids(_header(message, "References")),
        text=text,
        attachments=attachments,
        automatic=automatic_reason(message, sender=sender, envelope_sender=envelope_sender),
        sender_verified=sender_verified(message, sender=sender, authserv_id=authserv_id),
    )


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError):  # a header the policy cannot parse
        value = ""
    return storable(str(value or ""))


def storable(text: str) -> str:
    """`text` without what no database column takes (NUL, unpaired surrogates): a mail
    carrying them is stored without them, never refused by the database on each retry."""
    if protocol.storable(text):
        return text
    return "".join(ch for ch in text if protocol.storable(ch))


def _ids(value: str) -> list[str]:
    return re.findall(r"<[^<>\s]{1,900}>", value)


# --- automatic mail -----------------------------------------------------------------


def automatic_reason(message: Message, *, sender: str, envelope_sender: str | None) -> str:
    """Why this mail was written by a machine ("" if it looks a person's): answering
    one would start a mail loop, so it opens nothing and is never answered (RFC 3834)."""
    if envelope_sender == "":
        return "null envelope sender (a bounce)"
    auto_submitted = _header(message, "Auto-Submitted").strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    precedence = _header(message, "Precedence").strip().lower()
    if precedence in AUTOMATIC_PRECEDENCE:
        return f"Precedence: {precedence}"
    for name in ("X-Autoreply", "X-Autorespond"):
        if message.get(name) is not None:
            return f"{name} header"
    if message.get("List-Id") is not None or message.get("List-Unsubscribe") is not None:
        return "a mailing list's mail"
    if message.get_content_type() == "multipart/report":
        return "a delivery or read report"
    if sender.partition("@")[0] in MACHINE_SENDERS:
        return f"machine sender {sender}"
    return ""


# --- sender authentication -------------------------------------------------------------


def sender_verified(message: Message, *, sender: str, authserv_id: str) -> bool:
    """Whether the upstream server's Authentication-Results say the From address's
    domain passed DMARC, or DKIM (signed by that domain) or SPF (for that domain).

    Only one header is believed: the topmost (added by the server that handed us the
    mail), or the one naming `authserv_id`. A sender can write any Authentication-
    Results it likes further down; those never count."""
    headers = [str(h) for h in message.get_all("Authentication-Results", [])]
    if authserv_id:
        headers = [
            h for h in headers if h.strip().split(";", 1)[0].strip().lower() == authserv_id.lower()
        ]
    if not headers:
        return False
    domain = sender.rpartition("@")[2]
    results = headers[0].split(";")[1:]
    for result in results:
        result = " ".join(result.split()).lower()
        method, _, rest = result.partition("=")
        if not rest.startswith("pass"):
            continue
        if method == "dmarc" and f"header.from={domain}" in rest:
            return True
        if method == "dkim" and _aligned(rest, ("header.d=", "header.i="), domain):
            return True
        if method == "spf" and _aligned(rest, ("smtp.mailfrom=",), domain):
            return True
    return False


def _aligned(result: str, keys: tuple[str, ...], domain: str) -> bool:
    for key in keys:
        for value in re.findall(re.escape(key) + r"([^\s;]+)", result):
            value = value.rpartition("@")[2]
            if value == domain or domain.endswith("." + value):
                return True
    return False


# --- content ---------------------------------------------------------------------


def _content(message: Message) -> tuple[str, list[Attachment]]:
    """The mail's text (quoted history cut) and its attachments."""
    plain = html_part = None
    attachments = []
    parts = message.walk() if message.is_multipart() else [message]
    for part in parts:
        if part.is_multipart():
            continue
        disposition = (part.get_content_disposition() or "").lower()
        content_type = part.get_content_type()
        if (
            disposition == "attachment"
            or (disposition == "inline" and part.get_filename())
            or not content_type.startswith("text/")
        ):
            payload = part.get_payload(decode=True)
            if payload:
                attachments.append(Attachment(storable(part.get_filename() or "file"), payload))
            continue
        if content_type == "text/plain" and plain is None:
            plain = _decoded_text(part)
        elif content_type == "text/html" and html_part is None:
            html_part = _decoded_text(part)
    if plain is None and html_part is not None:
        plain = html_to_text(html_part)
    return trim_quoted(plain or ""), attachments


def _decoded_text(part: Message) -> str:
    payload = part.get_payload(decode=True) or b""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = payload.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        text = payload.decode("utf-8", errors="replace")
    return storable(text.replace("\r\n", "\n"))


class _TextOfHtml(HTMLParser):
    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "blockquote", "table"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.skipping = 0
        self.quoting = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "head"):
            self.skipping += 1
        if tag == "blockquote":
            self.quoting += 1  # the quoted history: cut, like "> " lines
        if tag in self.BLOCKS:
            self.chunks.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style", "head") and self.skipping:
            self.skipping -= 1
        if tag == "blockquote" and self.quoting:
            self.quoting -= 1
        if tag in self.BLOCKS:
            self.chunks.append("\n")

    def handle_data(self, data):
        if not self.skipping and not self.quoting:
            self.chunks.append(data)


def html_to_text(source: str) -> str:
    parser = _TextOfHtml()
    parser.feed(source)
    parser.close()
    text = html.unescape("".join(parser.chunks))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# A line that starts the quoted history of a reply (Gmail, Apple Mail, Thunderbird:
# "On <date>, <name> wrote:"; Outlook: its rule or header block), and a signature's.
_QUOTE_STARTS = (
    re.compile(r"^\s*On .{1,300}wrote:\s*$"),
    re.compile(r"^\s*Le .{1,300}a écrit\s*:\s*$"),
    re.compile(r"^\s*Am .{1,300}schrieb .{0,200}:\s*$"),
    re.compile(r"^\s*-{2,}\s*Original Message\s*-{2,}\s*$", re.I),
    re.compile(r"^\s*_{20,}\s*$"),
    re.compile(r"^\s*From: .+$"),
)
_SIGNATURE = re.compile(r"^-- ?$")


def trim_quoted(text: str) -> str:
    """The new part of a reply: up to the quoted history or the signature, without
    trailing "> " lines. A mail that is nothing but quotes keeps its whole text."""
    lines = text.replace("\r\n", "\n").split("\n")
    # "On ... wrote:" may be wrapped over two lines by the sender's client.
    kept = []
    for index, line in enumerate(lines):
        joined = line + " " + lines[index + 1] if index + 1 < len(lines) else line
        if _SIGNATURE.match(line) or any(p.match(line) for p in _QUOTE_STARTS):
            break
        if line.strip().startswith("On ") and _QUOTE_STARTS[0].match(joined):
            break
        kept.append(line)
    while kept and (not kept[-1].strip() or kept[-1].lstrip().startswith(">")):
        kept.pop()
    trimmed = "\n".join(kept).strip()
    return trimmed or text.strip()


def message_body(mail: ParsedMail) -> str:
    """The text as a message body: within the message size, storable."""
    body = storable(mail.text).strip()
    limit = protocol.MAX_BODY_CHARS
    if len(body) > limit:
        note = "\n[…the rest of this mail was cut]"
        body = body[: limit - len(note)] + note
    return body


def addresses(values: list[str]) -> list[str]:
    """Bare addresses, lowercased, of header values like "To"."""
    return [addr.lower() for _, addr in getaddresses(values) if "@" in addr]
