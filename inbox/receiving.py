"""What an inbound mail does: for each site it was sent to, it continues the email
conversation it answers (our signed Message-ID in In-Reply-To/References, else the
reply token in the address it was sent to), or goes to its sender's open conversation,
or opens an email conversation, routed and queued like a chat. Automatic mail (auto-
replies, bounces, lists) is dropped: it opens nothing and gets no answer.

A mail delivered twice (a sending server that retried after losing our 250) is stored
once: its message's client_msg_id comes from its Message-ID.
"""

import hashlib
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.utils import translation
from django.utils.translation import gettext, gettext_noop

from chat import attachments, languages, ratelimits, reply_address
from chat.conversations import sending
from chat.conversations.actors import Actor
from chat.errors import ConversationClosed
from chat.models import (
    Conversation,
    Message,
    SenderKind,
    Site,
    Visitor,
    hash_token,
    new_visitor_token,
)

from .models import EmailContact, EmailThread
from .parsing import ParsedMail, Unreadable, message_body

logger = logging.getLogger(__name__)

# Shared across workers and receivers (chat/ratelimits.py; Redis when configured).
SENDER_MAILS = ratelimits.Rule("mail-sender", "SUPPORTDESK_LIMIT_MAIL_SENDER")
SITE_MAILS = ratelimits.Rule("mail-site", "SUPPORTDESK_LIMIT_MAIL_SITE")
# Written into the conversation in the site's language (its agents read them; the
# subject also heads the reply mail): a mail's sender has no language we know.
NO_SUBJECT = gettext_noop("(no subject)")
ONLY_ATTACHMENTS = gettext_noop("(sent attachments)")
MAX_REFERENCES = 20


class TryLater(Exception):
    """Not now (a limit): the sending server should try again later (SMTP 451)."""

    def __init__(self, retry_after: int):
        super().__init__(f"try again in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Delivered:
    site_id: int
    conversation_id: int | None  # None: dropped (automatic mail)
    created: bool = False
    dropped: str = ""


def site_for_address(address: str) -> Site | None:
    """The enabled site whose inbound address this is (a `+tag` ignored)."""
    return Site.objects.filter(
        inbound_email__iexact=reply_address.base_address(address), enabled=True
    ).first()


def receive(mail: ParsedMail, *, recipients: list[str]) -> list[Delivered]:
    """Store `mail` for each site among `recipients` (`Unreadable`, `TryLater`)."""
    sites: dict[int, tuple[Site, int | None]] = {}
    for recipient in recipients:
        site = site_for_address(recipient)
        if site is None:
            continue
        token = reply_address.conversation_from_address(recipient)
        if site.pk not in sites or token is not None:
            sites[site.pk] = (site, token)
    return [_receive_at(site, mail, token) for site, token in sites.values()]


def _receive_at(site: Site, mail: ParsedMail, token_conversation: int | None) -> Delivered:
    if mail.automatic:
        logger.info("mail from %s to site %s dropped: %s", mail.sender, site.pk, mail.automatic)
        return Delivered(site.pk, None, dropped=mail.automatic)
    if site_for_address(mail.sender) is not None:
        # From one of our own addresses (a reply of ours that came back): answering it
        # would mail ourselves, round and round.
        logger.info("mail from our own address %s to site %s dropped", mail.sender, site.pk)
        return Delivered(site.pk, None, dropped="from one of our own addresses")
    body = message_body(mail)
    if not body and not mail.attachments:
        raise Unreadable("The mail has no text.")
    try:
        ratelimits.count((SENDER_MAILS, f"{site.pk}:{mail.sender}"), (SITE_MAILS, str(site.pk)))
    except ratelimits.RateLimited as exc:
        raise TryLater(exc.retry_after) from None
    with translation.override(languages.site_language(site)):
        accepted, refused = _checked_attachments(mail)
        if refused:
            body = (body + "\n\n" if body else "") + "\n".join(
                "[%s]" % (gettext("Not attached: %(name)s (%(reason)s)") % {"name": n, "reason": r})
                for n, r in refused
            )
        subject = mail.subject or gettext(NO_SUBJECT)
        body = body or gettext(ONLY_ATTACHMENTS)
    client_msg_id = _client_msg_id(site, mail)
    visitor_id = _visitor_of_thread(site, mail, token_conversation) or _contact_visitor(site, mail)
    origin = sending.EmailOrigin(
        subject=subject,
        sender_address=mail.from_header,
        sender_verified=mail.sender_verified,
    )
    try:
        posted = sending.post_message(
            Actor.visitor(visitor_id),
            client_msg_id=client_msg_id,
            body=body,
            email=origin,
        )
    except ConversationClosed:  # closed between the lock and the append: never here
        raise TryLater(1) from None
    conversation_id = posted.message["conversation"]
    _remember_thread(conversation_id, mail)
    for index, upload in enumerate(accepted, start=1):
        _attach(conversation_id, visitor_id, f"{client_msg_id}-a{index}", upload, origin)
    logger.info(
        "mail from %s to site %s: conversation %s%s",
        mail.sender,
        site.pk,
        conversation_id,
        "" if posted.created else " (a repeat, already stored)",
    )
    return Delivered(site.pk, conversation_id, created=posted.created)


def _client_msg_id(site: Site, mail: ParsedMail) -> str:
    """The same mail, delivered again, gets the same id (so it is stored once)."""
    key = mail.message_id or f"{mail.sender}\n{mail.subject}\n{mail.text}"
    return "mail-" + hashlib.sha256(f"{site.pk}\n{key}".encode()).hexdigest()[:40]


def _visitor_of_thread(site: Site, mail: ParsedMail, token_conversation: int | None) -> int | None:
    """The visitor of the conversation this mail answers, if it answers one of this
    site's: by our Message-IDs it quotes (latest first), else by the reply address.
    Both are signed (chat/reply_address.py), so neither can be made up."""
    conversation_id = reply_address.conversation_from_message_ids(
        [" ".join(mail.in_reply_to), " ".join(mail.references)]
    )
    for candidate in (conversation_id, token_conversation):
        if candidate is None:
            continue
        visitor_id = (
            Conversation.objects.filter(pk=candidate, site=site)
            .values_list("visitor_id", flat=True)
            .first()
        )
        if visitor_id is not None:
            return visitor_id
    return None


def _contact_visitor(site: Site, mail: ParsedMail) -> int:
    """The visitor who writes from this address (made on its first mail)."""
    known = (
        EmailContact.objects.filter(site=site, address=mail.sender)
        .values_list("visitor_id", flat=True)
        .first()
    )
    if known is not None:
        return known
    try:
        with transaction.atomic():
            visitor = Visitor.objects.create(
                site=site,
                # Never given to anyone: an email visitor has no widget session.
                token_hash=hash_token(new_visitor_token()),
                name=mail.sender_name,
                email=mail.sender,
            )
            EmailContact.objects.create(site=site, address=mail.sender, visitor=visitor)
            return visitor.pk
    except IntegrityError:
        # Race: the same sender's first two mails at once; the other made the contact.
        return EmailContact.objects.get(site=site, address=mail.sender).visitor_id


def _remember_thread(conversation_id: int, mail: ParsedMail) -> None:
    """The visitor's latest Message-ID and the References chain, for our next reply."""
    with transaction.atomic():
        thread, _ = EmailThread.objects.select_for_update().get_or_create(
            conversation_id=conversation_id
        )
        chain = thread.references.split() + mail.references + mail.in_reply_to
        if mail.message_id:
            chain.append(mail.message_id)
            thread.last_inbound_id = mail.message_id
        thread.references = " ".join(list(dict.fromkeys(chain))[-MAX_REFERENCES:])
        thread.save(update_fields=["last_inbound_id", "references"])


def _checked_attachments(mail: ParsedMail):
    """The attachments the chat's checks take (content type by content, size), and the
    names and reasons of the others."""
    accepted, refused = [], []
    max_bytes = settings.SUPPORTDESK_ATTACHMENT_MAX_BYTES
    for item in mail.attachments:
        name = attachments.clean_name(item.name)
        upload = SimpleUploadedFile(name, item.content)
        if len(item.content) > max_bytes:
            limit = attachments.describe_limit(max_bytes)
            refused.append((name, gettext("over %(limit)s") % {"limit": limit}))
            continue
        try:
            attachments.inspect(upload, name)
        except attachments.Refused as refusal:
            refused.append((name, refusal.detail))
            continue
        accepted.append(upload)
    return accepted, refused


def _attach(conversation_id: int, visitor_id: int, client_msg_id: str, upload, origin) -> None:
    """One accepted attachment as a message of its own (like the widget sends them)."""
    if Message.objects.filter(
        conversation_id=conversation_id, client_msg_id=client_msg_id
    ).exists():
        return  # a repeat of a mail already stored
    conversation = Conversation.objects.get(pk=conversation_id)
    try:
        stored = attachments.store(
            conversation=conversation,
            uploaded_by=SenderKind.VISITOR,
            agent_id=None,
            upload=upload,
            max_bytes=settings.SUPPORTDESK_ATTACHMENT_MAX_BYTES,
        )
        sending.post_message(
            Actor.visitor(visitor_id),
            client_msg_id=client_msg_id,
            body=stored.name,
            attachment_id=stored.pk,
            email=origin,
        )
    except (attachments.Refused, ConversationClosed) as exc:
        logger.info("attachment of mail into conversation %s not stored: %s", conversation_id, exc)
