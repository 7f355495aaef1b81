"""Visitors and their sessions: tokens (issued, kept, rotated), what the widget reports
about the visitor (page, time zone, browser), the offline form and transcripts by email.

A visitor is known by a token the widget keeps; only its hash is stored. A token of
site A means nothing on site B.
"""

from collections.abc import Callable
from email.utils import formataddr

from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext, gettext_noop

from .. import events, languages, selectors, transcript_email, visitor_context
from ..errors import NotFound, SiteDisabled, TooManyAttributes
from ..models import Conversation, Site, Visitor, hash_token, new_visitor_token
from ..store import loop, sql
from .actors import Actor
from .messages import PostedMessage
from .sending import EmailOrigin, post_message

# The subject of an email conversation the offline form opens (the reply's "Re: ..."),
# stored in the visitor's language: the reply mail goes to them.
OFFLINE_SUBJECT = gettext_noop("Your message to us")


def create_visitor_session(
    *,
    site_key: str,
    visitor_token: str | None,
    rotate: bool = False,
    before_issuing: Callable[[], None] | None = None,
    language: str = "",
) -> tuple[Visitor, str]:
    """The visitor behind a known token of this site (token unchanged), else a new one.

    `rotate` gives a known token's visitor a new token; the old one stops working and
    the sockets that said hello with it are closed. `before_issuing` runs before any new
    token is made (the per-address limit); raising there issues and stores nothing.
    `language` (a shipped language code, or "" for unknown) is the widget's language, what
    the visitor's transcript email is written in.
    """
    site = selectors.enabled_site(site_key)
    if visitor_token:
        old_hash = hash_token(visitor_token)
        holder = (
            Visitor.objects.filter(token_hash=old_hash, site=site)
            .select_related("merged_into")
            .first()
        )
        # The token's own row, or (another device of a verified user) the user's record.
        visitor = holder and (holder.merged_into or holder)
        if visitor is not None and not rotate:
            touch_visitor(visitor_id=visitor.pk, language=language)
            return visitor, visitor_token
        if visitor is not None:
            if before_issuing is not None:
                before_issuing()
            token = new_visitor_token()
            # Race: two rotations of one token at once; the update matches the old hash
            # only once, and the loser is treated like any unknown token (a new visitor).
            if Visitor.objects.filter(pk=holder.pk, token_hash=old_hash).update(
                token_hash=hash_token(token), last_seen=timezone.now()
            ):
                events.emit_on_commit(events.VisitorTokenRotated(visitor_id=visitor.pk))
                return visitor, token
    if before_issuing is not None:
        before_issuing()
    token = new_visitor_token()
    visitor = Visitor.objects.create(site=site, token_hash=hash_token(token), language=language)
    return visitor, token


# A visitor's `last_seen` is refreshed at most this often (seconds), by its `hello` or
# its pings: it serves the inactivity timeout and retention, counted in minutes and
# days, and a reconnect storm after a deploy should not be one write per socket.
TOUCH_EVERY = 60.0


def identify_visitor(*, site_key: str, visitor_token: str) -> tuple[Site, Visitor]:
    """A socket's `hello`: the enabled site and the visitor its token was issued for on
    that site (`NotFound`, `SiteDisabled` otherwise), seen now (within TOUCH_EVERY).

    One query on the way in (the visitor with its site and the record it was merged
    into); the answers on the way out are `enabled_site`'s and `visitor_for_token`'s."""
    visitor = (
        Visitor.objects.filter(token_hash=hash_token(visitor_token), site__key=site_key)
        .select_related("site", "merged_into")
        .first()
    )
    if visitor is None:
        selectors.enabled_site(site_key)  # NotFound or SiteDisabled, as before the token
        raise NotFound
    site = visitor.site
    if not site.enabled:
        raise SiteDisabled
    # Another device of a verified user: the token stands for the user's record.
    visitor = visitor.merged_into or visitor
    if visitor.last_seen < timezone.now() - timezone.timedelta(seconds=TOUCH_EVERY):
        touch_visitor(visitor_id=visitor.id)
    return site, visitor


def reads_hello_on_loop() -> bool:
    """Whether a `hello` reads on the worker's event loop (`identify_on_loop`,
    `resume.visitor_ready_on_loop`): PostgreSQL, SUPPORTDESK_HELLO_ON_LOOP."""
    return loop.hello_enabled()


async def identify_on_loop(*, site_key: str, visitor_token: str) -> tuple[Site, Visitor] | None:
    """`identify_visitor` on the worker's event loop (chat/store/loop.py), in one
    statement that also refreshes `last_seen` when over TOUCH_EVERY old, without a hop
    to an ORM thread: after a deploy every open widget says `hello` at once.

    None where it does not answer: an unknown token or site, a disabled site, or the
    database failed; `identify_visitor` then decides (every refusal stays its own)."""
    now = timezone.now()
    token_hash = hash_token(visitor_token)
    cutoff = now - timezone.timedelta(seconds=TOUCH_EVERY)
    try:
        row = await loop.fetch_one(
            sql.hello_visitor_sql(), [now, token_hash, site_key, cutoff, token_hash, site_key]
        )
    except loop.Unavailable:
        # Whether the touch was made is unknown: the ORM path's check makes it at most
        # once more (the same UPDATE).
        return None
    if row is None:
        return None
    site, visitor = sql.hello_visitor_from(row)
    if not site.enabled:
        return None
    return site, visitor


def touch_visitor(*, visitor_id: int, language: str = "") -> None:
    # The language the widget speaks now: the last one wins (one UPDATE either way).
    changes = {"language": language} if language else {}
    Visitor.objects.filter(pk=visitor_id).update(last_seen=timezone.now(), **changes)


def leave_offline_message(
    *,
    site_key: str,
    visitor_token: str | None,
    name: str,
    email: str,
    question: str,
    before_issuing: Callable[[], None] | None = None,
    before_opening: Callable[[], None] | None = None,
) -> tuple[Visitor, str, PostedMessage]:
    """The widget's offline form: the visitor (a known token's, else a new one) gets the
    name and email it gave, and its question is posted like a chat message, opening a
    queued conversation that agents see (routed at once if someone is free after all)."""
    visitor, token = create_visitor_session(
        site_key=site_key, visitor_token=visitor_token, before_issuing=before_issuing
    )
    Visitor.objects.filter(pk=visitor.pk).update(name=name, email=email)
    visitor.name, visitor.email = name, email
    # A site with an inbound address answers by email: the question opens an email
    # conversation, so the agent's reply is mailed and the visitor's answer threads back.
    email_origin = None
    if Site.objects.filter(pk=visitor.site_id).exclude(inbound_email="").exists():
        with translation.override(languages.supported(visitor.language)):
            subject = gettext(OFFLINE_SUBJECT)
        email_origin = EmailOrigin(
            subject=subject, sender_address=formataddr((name, email)), sender_verified=False
        )
    posted = post_message(
        Actor.visitor(visitor.id),
        client_msg_id=f"offline-{new_visitor_token()[:16]}",
        body=question,
        before_opening=before_opening,
        email=email_origin,
    )
    return visitor, token, posted


def report_visitor_context(
    *,
    visitor_id: int,
    allowed_origins: list[str],
    page: object = None,
    timezone_name: object = None,
    user_agent: str | None = None,
    known: Visitor | None = None,
) -> list[str]:
    """Store what the widget reports about the visitor (`hello`, `page.view`), cleaned
    by chat/visitor_context.py (a value that fails a check is dropped, never stored).
    Only fields that changed are written, and only then does the agent of the visitor's
    active conversation hear of it. Returns the names of the changed fields.

    `known` (the visitor as `hello` just read it) saves the read when nothing changed,
    which is every reconnect on the same page.
    """
    fields = _context_fields(allowed_origins, page, timezone_name, user_agent)
    if not fields or (known is not None and all(getattr(known, f) == v for f, v in fields.items())):
        return []
    with transaction.atomic():
        # Race: two tabs of one visitor report pages at once; the row lock orders them,
        # so the agent's last `visitor.context` is the page that was stored last.
        visitor = Visitor.objects.select_for_update().filter(pk=visitor_id).first()
        if visitor is None:
            raise NotFound
        changed = [f for f, v in fields.items() if getattr(visitor, f) != v]
        if not changed:
            return []
        for f in changed:
            setattr(visitor, f, fields[f])
        visitor.save(update_fields=changed)
        _announce_context(visitor)
    return changed


def context_unchanged(
    known: Visitor,
    *,
    allowed_origins: list[str],
    page: object = None,
    timezone_name: object = None,
    user_agent: str | None = None,
) -> bool:
    """Whether `report_visitor_context` would find nothing to store for `known` (no
    query): a `hello` then skips the trip to an ORM thread, which every reconnect on the
    same page would otherwise make for nothing."""
    fields = _context_fields(allowed_origins, page, timezone_name, user_agent)
    return all(getattr(known, f) == v for f, v in fields.items())


def _context_fields(allowed_origins, page, timezone_name, user_agent) -> dict:
    fields = visitor_context.clean_page(page, allowed_origins)
    if (zone := visitor_context.clean_timezone(timezone_name)) is not None:
        fields["timezone"] = zone
    if user_agent is not None:
        fields["user_agent"] = visitor_context.clean_user_agent(user_agent)
    return fields


def _announce_context(visitor: Visitor) -> None:
    """The agent of the visitor's active chat hears of its new context, after commit
    (called inside the transaction that changed it, under the visitor's row lock)."""
    active = (
        Conversation.objects.filter(visitor_id=visitor.pk, status=Conversation.Status.ACTIVE)
        .only("id", "site_id", "visitor_id", "agent_id")
        .first()
    )
    if active is not None:
        events.emit_on_commit(
            events.VisitorContextChanged(
                **events.about(active), context=selectors.visitor_context_dict(visitor)
            )
        )


def update_visitor(
    *,
    visitor_id: int,
    name: str | None = None,
    email: str | None = None,
    attributes: dict | None = None,
) -> Visitor:
    """What another system knows of a visitor (the REST API): a new name or email (None
    leaves it), attributes merged into theirs (a None value removes the key). The agent
    of the visitor's active chat hears of it."""
    with transaction.atomic():
        visitor = Visitor.objects.select_for_update().filter(pk=visitor_id).first()
        if visitor is None:
            raise NotFound
        changed = []
        if name is not None and name != visitor.name:
            visitor.name = name
            changed.append("name")
        if email is not None and email != visitor.email:
            visitor.email = email
            changed.append("email")
        if attributes:
            merged = {**visitor.attributes, **attributes}
            merged = {key: value for key, value in merged.items() if value is not None}
            if len(merged) > Visitor.MAX_ATTRIBUTES:
                raise TooManyAttributes
            if merged != visitor.attributes:
                visitor.attributes = merged
                changed.append("attributes")
        if not changed:
            return visitor
        visitor.save(update_fields=changed)
        _announce_context(visitor)
    return visitor


def prepare_transcript_email(
    *,
    visitor_id: int,
    email: str,
    before_sending: Callable[[int], None] | None = None,
) -> transcript_email.TranscriptEmail:
    """The transcript of the visitor's latest conversation (open or closed), addressed
    to `email` and ready to send; `NotFound` if it never had one. `before_sending` gets
    the conversation id first (the shared limits); raising there changes nothing.

    The visitor's email is stored if it had none (one it left in the offline form is
    never overwritten). Nothing is sent here: the caller sends it outside any
    transaction and off the database thread (`transcript_email.send`), since a mail
    server may take seconds."""
    conversation = selectors.latest_conversation(visitor_id)
    if conversation is None:
        raise NotFound
    if before_sending is not None:
        before_sending(conversation.id)
    Visitor.objects.filter(pk=visitor_id, email="").update(email=email)
    return transcript_email.build(conversation, to=email)
