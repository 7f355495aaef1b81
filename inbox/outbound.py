"""Agents' replies to email conversations, mailed to the visitor from inside every
worker (no process of its own), like the webhooks' sender.

The record decides, never an event: each turn looks for email conversations whose
agent messages are past their thread's `mailed_seq` (`collect`), and turns them into
one `OutboundMail` each in the transaction that advances `mailed_seq`, under the
thread's row lock (two workers collecting the same conversation: the second finds
nothing left). So a reply is mailed only once it committed, is never made twice, and
a worker that died before mailing it leaves it to the next turn anywhere.
`MessageCreated` only rings the doorbell, so an agent's reply leaves at once.

Sending: a worker claims due mails (SKIP LOCKED, a lease while it sends), hands each to
Django's email backend and records the outcome; a failure is retried with backoff for
a day. A worker killed between the mail server's "250" and the record leaves the claim
to expire and the mail is sent again under the same Message-ID, which mail clients
show once. Internal notes are another table: nothing here reads them.
"""

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from email.utils import formataddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext

from chat import languages, reply_address
from chat.models import Attachment, Conversation, Message, SenderKind
from chat.transport.background import start_once

from .models import EmailThread, OutboundMail

logger = logging.getLogger(__name__)
Status = OutboundMail.Status

LEASE = timedelta(seconds=60)
GIVE_UP_AFTER = timedelta(hours=24)
BACKOFF = (5, 30, 120, 600, 1800, 3600)
# A conversation closed this long ago is no longer looked at for replies to mail.
CLOSED_WINDOW = timedelta(days=1)


# --- from agent messages to mails ------------------------------------------------------


def collect(*, now: datetime | None = None) -> int:
    """Make the mails of agent messages not mailed yet; returns how many were made."""
    now = now or timezone.now()
    mailed = EmailThread.objects.filter(conversation_id=OuterRef("pk")).values("mailed_seq")
    due = (
        Conversation.objects.filter(channel=Conversation.Channel.EMAIL)
        .filter(Q(status__in=Conversation.OPEN_STATUSES) | Q(closed_at__gte=now - CLOSED_WINDOW))
        .annotate(mailed=Coalesce(Subquery(mailed), 0))
        .filter(last_seq__gt=F("mailed"))
        .values_list("pk", "last_seq")
    )
    return sum(_collect_one(conversation_id, up_to) for conversation_id, up_to in due)


def _collect_one(conversation_id: int, up_to: int) -> int:
    with transaction.atomic():
        thread, _ = EmailThread.objects.get_or_create(conversation_id=conversation_id)
        # Race: every worker collects; the row lock makes one of them mail these.
        thread = EmailThread.objects.select_for_update().get(pk=thread.pk)
        if thread.mailed_seq >= up_to:
            return 0
        replies = list(
            Message.objects.filter(
                conversation_id=conversation_id,
                seq__gt=thread.mailed_seq,
                seq__lte=up_to,
                sender=SenderKind.AGENT,
            )
            .select_related("sender_agent", "attachment")
            .order_by("seq")
        )
        made = 0
        if replies:
            conversation = Conversation.objects.select_related("site", "visitor").get(
                pk=conversation_id
            )
            if conversation.visitor.email and conversation.site.inbound_email:
                _make_mail(conversation, thread, replies, first_seq=thread.mailed_seq)
                made = 1
            else:
                logger.warning("conversation %s: no address to mail the reply to", conversation_id)
        thread.mailed_seq = up_to
        thread.save(update_fields=["mailed_seq"])
    return made


def _render(template: str, context: dict) -> str:
    with translation.override(context["language"]):
        return render_to_string(template, context)


def _make_mail(conversation, thread: EmailThread, replies: list[Message], *, first_seq: int):
    site = conversation.site
    domain = site.inbound_email.rpartition("@")[2]
    agent = replies[-1].sender_agent
    # The customer's language where their widget told it, else the site's.
    language = languages.supported(conversation.visitor.language) or languages.site_language(site)
    with translation.override(language):
        subject = conversation.subject or gettext("Your message")
    if not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"  # the mail convention every client threads by
    context = {
        "language": language,
        "direction": languages.direction(language),
        "site_name": site.name,
        "agent_name": agent.display_name if agent else site.name,
        "replies": [
            {
                "body": m.body,
                "attachment": m.attachment.name if hasattr(m, "attachment") else None,
            }
            for m in replies
        ],
    }
    references = thread.references.split()
    OutboundMail.objects.create(
        conversation=conversation,
        message_id=reply_address.message_id(conversation.pk, domain=domain),
        from_address=formataddr((site.name, site.inbound_email)),
        to_address=conversation.visitor.email,
        reply_to=reply_address.reply_address(site.inbound_email, conversation.pk),
        subject=subject[:400],
        in_reply_to=thread.last_inbound_id,
        references=" ".join(references),
        text=_render("inbox/reply.txt", context),
        html=_render("inbox/reply.html", context),
        first_seq=first_seq,
        last_seq=replies[-1].seq,
    )


# --- sending ---------------------------------------------------------------------------


def claim(*, limit: int = 10, now: datetime | None = None) -> list[OutboundMail]:
    """Lease up to `limit` due mails to this worker, oldest first, none of a
    conversation while an earlier mail of it waits (replies arrive in order)."""
    now = now or timezone.now()
    earlier = OutboundMail.objects.filter(
        conversation_id=OuterRef("conversation_id"),
        pk__lt=OuterRef("pk"),
        status__in=[Status.PENDING, Status.SENDING],
    )
    rows = OutboundMail.objects.filter(
        Q(status=Status.PENDING, next_attempt_at__lte=now)
        | Q(status=Status.SENDING, lease_until__lt=now)
    ).exclude(Exists(earlier))
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            rows = rows.select_for_update(skip_locked=True)
        claimed = list(rows.order_by("pk")[:limit])
        OutboundMail.objects.filter(pk__in=[m.pk for m in claimed]).update(
            status=Status.SENDING, lease_until=now + LEASE
        )
    return claimed


def files_of(mail: OutboundMail) -> list[Attachment]:
    """The agents' attachments among the messages a mail carries."""
    return list(
        Attachment.objects.filter(
            message__conversation_id=mail.conversation_id,
            message__seq__gt=mail.first_seq,
            message__seq__lte=mail.last_seq,
            message__sender=SenderKind.AGENT,
        ).order_by("message__seq")
    )


def as_email(mail: OutboundMail, files: list[Attachment] = ()) -> EmailMultiAlternatives:
    headers = {"Message-ID": mail.message_id}
    if mail.in_reply_to:
        headers["In-Reply-To"] = mail.in_reply_to
    chain = mail.references.split() + ([mail.in_reply_to] if mail.in_reply_to else [])
    references = " ".join(dict.fromkeys(chain))
    if references:
        headers["References"] = references
    message = EmailMultiAlternatives(
        subject=mail.subject,
        body=mail.text,
        from_email=mail.from_address,
        to=[mail.to_address],
        reply_to=[mail.reply_to],
        headers=headers,
    )
    message.attach_alternative(mail.html, "text/html")
    for attachment in files:
        with attachment.file.open("rb") as content:
            message.attach(attachment.name, content.read(), attachment.content_type)
    return message


def send(mail: OutboundMail, files: list[Attachment] = ()) -> str:
    """Hand one mail to the backend (blocking: off the event loop); "" or the error."""
    try:
        as_email(mail, files).send(fail_silently=False)
        return ""
    except Exception as exc:  # the backend's errors are of every kind (SMTP, OS, TLS)
        logger.warning("mail %s to %s failed: %r", mail.pk, mail.to_address, exc)
        return repr(exc)[:500] or "failed"


def record(mail: OutboundMail, error: str, *, now: datetime | None = None) -> None:
    now = now or timezone.now()
    changes = {"attempts": mail.attempts + 1, "lease_until": None, "last_error": error}
    if not error:
        changes.update(status=Status.SENT, sent_at=now)
    elif now - mail.created_at >= GIVE_UP_AFTER:
        changes.update(status=Status.FAILED)
        logger.error("mail %s to %s given up: %s", mail.pk, mail.to_address, error)
    else:
        delay = BACKOFF[min(mail.attempts, len(BACKOFF) - 1)]
        changes.update(status=Status.PENDING, next_attempt_at=now + timedelta(seconds=delay))
    OutboundMail.objects.filter(pk=mail.pk).update(**changes)


# --- the loop in each worker ------------------------------------------------------------

_doorbells: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}


def ring(event) -> None:
    """An agent's reply in an email conversation was stored: wake this worker's sender
    (any thread). Nothing else can be mailed, so nothing else wakes it: each turn reads
    the database twice on an ORM thread, and woken by every chat reply it ran back to
    back under load: nearly half the workers' CPU per message (docs/performance.md, change 19)."""
    if (
        event.channel != Conversation.Channel.EMAIL
        or event.message.get("sender") != SenderKind.AGENT
    ):
        return
    for loop, doorbell in list(_doorbells.items()):
        if not loop.is_closed():
            loop.call_soon_threadsafe(doorbell.set)


def ensure_running() -> None:
    """Start this event loop's mail sender once (a worker starting)."""
    interval = settings.SUPPORTDESK_MAIL_INTERVAL
    if interval <= 0:
        return

    def run():
        # A new doorbell for the loop whose sender starts (a test's loop is new each time).
        doorbell = _doorbells[asyncio.get_running_loop()] = asyncio.Event()
        return _run(interval, doorbell)

    start_once("mail-sender", run)


async def _run(interval: float, doorbell: asyncio.Event) -> None:
    while True:
        doorbell.clear()
        sent = 0
        try:
            sent = await run_once()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("mail sending failed")  # the database is down: next turn
        if not sent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(doorbell.wait(), timeout=interval)


async def run_once(*, limit: int = 10) -> int:
    """One turn: make the mails of new replies, then send what is due. Returns how
    many were sent (or tried)."""
    from chat.transport.orm import on_database_thread

    await on_database_thread(collect)()
    due = await on_database_thread(claim)(limit=limit)
    for mail in due:  # one by one: a conversation's replies leave in order
        files = await on_database_thread(files_of)(mail)
        error = await asyncio.to_thread(send, mail, files)
        await on_database_thread(record)(mail, error)
    return len(due)
