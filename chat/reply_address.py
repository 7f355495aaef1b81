"""Where a visitor's emailed answer finds its conversation: the reply address
(`support+c42-9f0e…@shop.example`, plus-addressing on the site's inbound address) and the
Message-ID of every mail we send about a conversation (`<c42.…​.9f0e…@shop.example>`).

Both carry the conversation's id signed with the SECRET_KEY (a truncated HMAC), so a
mail naming a conversation by either is trusted to belong to it, with no table to look
up and no way to guess another conversation's address. The email channel's receiver
reads them back (`conversation_from_address`, `conversation_from_message_ids`); the
core writes them into the mails it sends itself (transcripts).
"""

import re
import secrets

from django.utils.crypto import constant_time_compare, salted_hmac

SALT = "supportdesk.reply-address"
# Lowercase hex: a local part may be case-folded on its way back to us.
SIGNATURE_CHARS = 16
_TOKEN = re.compile(rf"c(\d{{1,18}})-([0-9a-f]{{{SIGNATURE_CHARS}}})")
_MESSAGE_ID = re.compile(rf"<c(\d{{1,18}})\.[0-9a-z]+\.([0-9a-f]{{{SIGNATURE_CHARS}}})@")


def _signature(conversation_id: int) -> str:
    return salted_hmac(SALT, str(conversation_id), algorithm="sha256").hexdigest()[:SIGNATURE_CHARS]


def _valid(conversation_id: str, signature: str) -> int | None:
    number = int(conversation_id)
    return number if constant_time_compare(_signature(number), signature) else None


def reply_address(inbound_email: str, conversation_id: int) -> str:
    """The site's inbound address with the conversation's token after a `+`."""
    local, _, domain = inbound_email.rpartition("@")
    local = local.split("+", 1)[0]
    return f"{local}+c{conversation_id}-{_signature(conversation_id)}@{domain}"


def message_id(conversation_id: int, *, domain: str) -> str:
    """A new Message-ID (angle brackets included) for a mail about the conversation."""
    unique = secrets.token_hex(8)
    return f"<c{conversation_id}.{unique}.{_signature(conversation_id)}@{domain}>"


def base_address(address: str) -> str:
    """The address without its `+…` tag, lowercased: what an inbound address is matched by."""
    local, _, domain = address.strip().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}".lower()


def conversation_from_address(address: str) -> int | None:
    """The conversation a reply address names, if its signature holds."""
    local = address.strip().rpartition("@")[0]
    _, plus, tag = local.partition("+")
    match = _TOKEN.fullmatch(tag.lower()) if plus else None
    return _valid(*match.groups()) if match else None


def conversation_from_message_ids(header_values: list[str]) -> int | None:
    """The conversation named by the latest of our Message-IDs among these header
    values (In-Reply-To first, then References, latest last), if any holds."""
    for value in header_values:
        for match in reversed(list(_MESSAGE_ID.finditer(value))):
            found = _valid(*match.groups())
            if found is not None:
                return found
    return None
