"""Identity verification: a site's signed-in user, vouched for by the site's own server.

The site's server computes `user_hash = hex(HMAC-SHA256(site.identity_secret, user_id))`
for its signed-in user and the page passes `user_id`, `user_hash` (and the user's name
and email) to the widget, which sends them with its visitor session. A valid signature
makes the visitor that user's record at the site: agents see it as verified, and every
device of the user is that one visitor (the same chats, from any device). Without a
valid signature nothing links the visitor to anyone: the name and email are kept only
as what the visitor says about themselves, never shown as verified.

One visitor per (site, user id) holds the person's chats; another device's visitor row
becomes an alias of it (`merged_into`): it keeps only its token, which stands for the
person's visitor wherever a token is read (`resolve`).
"""

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import events, selectors
from ..models import Conversation, Site, Visitor
from . import closing
from .actors import Actor

logger = logging.getLogger(__name__)

MAX_USER_ID_CHARS = 200


class Unverified(Exception):
    """An identity whose signature does not hold (or the site verifies none)."""


@dataclass(frozen=True)
class Identity:
    """What the page said about its signed-in user."""

    user_id: str
    user_hash: str
    name: str = ""
    email: str = ""


def new_secret() -> str:
    return secrets.token_hex(32)


def rotate_secret(site: Site) -> str:
    """A new identity secret for the site (signatures made with the old one stop
    holding: visitors stay verified, new sessions need the new one)."""
    secret = new_secret()
    Site.objects.filter(pk=site.pk).update(identity_secret=secret)
    site.identity_secret = secret
    return secret


def signature(secret: str, user_id: str) -> str:
    """What the site's server computes for its user: hex HMAC-SHA256 of the user id."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def check(site: Site, identity: Identity) -> None:
    """`Unverified` unless the site verifies identities and the signature holds."""
    if not site.identity_secret or not identity.user_id:
        raise Unverified
    expected = signature(site.identity_secret, identity.user_id)
    if not hmac.compare_digest(expected, identity.user_hash.strip().lower()):
        raise Unverified


def _clean_email(email: str) -> str:
    email = email.strip()
    try:
        validate_email(email)
    except ValidationError:
        return ""
    return email if len(email) <= 254 else ""


def identify(visitor: Visitor, identity: Identity) -> tuple[Visitor, bool]:
    """The visitor that stands for this browser from now on, and whether it is verified.

    Verified: the user's record at the site (this visitor, or the one another device
    made first, which this visitor's token then stands for: its chats move there and its
    sockets are closed, to come back as the user). Not verified: this visitor, with the
    name and email it gave kept as unverified, where it had none."""
    site = visitor.site
    try:
        check(site, identity)
    except Unverified:
        _say_who(visitor, identity, overwrite=False)
        return visitor, False
    for _attempt in range(2):
        try:
            with transaction.atomic():
                return _link(visitor, identity), True
        except IntegrityError:
            # Another device of this user became its record meanwhile: join that one.
            continue
    raise RuntimeError("could not link a verified visitor")  # pragma: no cover


def _link(visitor: Visitor, identity: Identity) -> Visitor:
    record = (
        Visitor.objects.select_for_update()
        .filter(site_id=visitor.site_id, user_id=identity.user_id)
        .first()
    )
    if record is None or record.pk == visitor.pk:
        # The first device of this user (or this one again): it becomes the record.
        record = Visitor.objects.select_for_update().get(pk=visitor.pk)
        record.user_id = identity.user_id
        record.verified_at = record.verified_at or timezone.now()
        record.save(update_fields=["user_id", "verified_at"])
        _say_who(record, identity, overwrite=True)
        _tell_the_agent(record)
        return record
    # Another device: its chats join the user's, and its token stands for the record.
    # A person has one open chat: if both devices had one, this device's is closed (both
    # sides are told) and the record's goes on.
    open_here = Conversation.objects.filter(
        visitor_id=visitor.pk, status__in=Conversation.OPEN_STATUSES
    )
    if (
        open_here.exists()
        and Conversation.objects.filter(
            visitor_id=record.pk, status__in=Conversation.OPEN_STATUSES
        ).exists()
    ):
        for conversation_id in list(open_here.values_list("pk", flat=True)):
            closing.close_conversation(Actor.system(), conversation_id=conversation_id)
    moved = Conversation.objects.filter(visitor_id=visitor.pk).update(visitor_id=record.pk)
    Visitor.objects.filter(pk=visitor.pk).update(merged_into=record, user_id="")
    Visitor.objects.filter(merged_into_id=visitor.pk).update(merged_into=record)
    _say_who(record, identity, overwrite=True)
    _tell_the_agent(record)
    # Its sockets belong to a visitor that is now an alias: closed, they come back (same
    # token) as the user's record, with its chats.
    events.emit_on_commit(events.VisitorMoved(visitor_id=visitor.pk))
    logger.info(
        "visitor %s joined verified visitor %s (%s conversations moved)",
        visitor.pk,
        record.pk,
        moved,
    )
    return record


def _say_who(visitor: Visitor, identity: Identity, *, overwrite: bool) -> None:
    """The name and email from the page: a verified user's replace what was there; an
    unverified visitor's only fill what is empty."""
    changes = {}
    name = identity.name.strip()[:200]
    email = _clean_email(identity.email) if identity.email else ""
    if name and (overwrite or not visitor.name):
        changes["name"] = name
    if email and (overwrite or not visitor.email):
        changes["email"] = email
    if changes:
        Visitor.objects.filter(pk=visitor.pk).update(**changes)
        for field, value in changes.items():
            setattr(visitor, field, value)


def _tell_the_agent(visitor: Visitor) -> None:
    """The agent of the visitor's active chat sees who it is now (verified)."""
    active = Conversation.objects.filter(
        visitor_id=visitor.pk, status=Conversation.Status.ACTIVE
    ).first()
    if active is not None:
        events.emit_on_commit(
            events.VisitorContextChanged(
                **events.about(active), context=selectors.visitor_context_dict(visitor)
            )
        )


def resolve(visitor: Visitor) -> Visitor:
    """The visitor a token's row stands for: itself, or the verified user's record.
    Load with select_related("merged_into")."""
    return visitor.merged_into or visitor
