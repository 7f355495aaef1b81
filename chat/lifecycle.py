"""How transcripts leave the system: retention purges per site, and erasing one visitor
on request (GDPR art. 17). Both write an audit log entry; neither copies what it
removes into the log."""

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from . import events
from .conversations import closing
from .conversations.actors import Actor
from .errors import ConversationClosed, NotFound
from .models import (
    Attachment,
    AuditLogEntry,
    Conversation,
    ConversationRating,
    Message,
    Note,
    SenderKind,
    Site,
    Visitor,
    hash_token,
)

logger = logging.getLogger(__name__)

# Conversations deleted per transaction: short locks, bounded memory, and under SQLite's
# limit on query parameters.
PURGE_BATCH = 500
ERASED_BODY = "[erased]"


# --- retention ------------------------------------------------------------------------


@dataclass
class SitePurge:
    """What a site's retention removes (dry run) or removed."""

    site: Site
    cutoff: datetime
    conversations: int = 0
    messages: int = 0
    visitors: int = 0


def expired_conversations(site: Site, cutoff: datetime) -> QuerySet:
    """Closed conversations of the site that closed before the cutoff. Open ones are
    never purged, however old: someone is still talking."""
    return Conversation.objects.filter(
        site=site, status=Conversation.Status.CLOSED, closed_at__lt=cutoff
    )


def forgotten_visitors(site: Site, cutoff: datetime) -> QuerySet:
    """Visitors of the site not seen since the cutoff and with no conversation left:
    their name, email and token would otherwise outlive every transcript."""
    return Visitor.objects.filter(site=site, last_seen__lt=cutoff).filter(
        ~Q(pk__in=Conversation.objects.values("visitor_id"))
    )


def purge_plan(*, now: datetime | None = None) -> list[SitePurge]:
    """For each site with a retention, what a purge now would delete (nothing deleted)."""
    now = now or timezone.now()
    plan = []
    for site in Site.objects.filter(retention_days__isnull=False).order_by("name", "pk"):
        cutoff = now - timedelta(days=site.retention_days)
        expired = expired_conversations(site, cutoff)
        plan.append(
            SitePurge(
                site=site,
                cutoff=cutoff,
                conversations=expired.count(),
                messages=Message.objects.filter(conversation__in=expired.values("pk")).count(),
                # Counted as if the expired conversations were already gone.
                visitors=Visitor.objects.filter(site=site, last_seen__lt=cutoff)
                .exclude(
                    pk__in=Conversation.objects.exclude(pk__in=expired.values("pk")).values(
                        "visitor_id"
                    )
                )
                .count(),
            )
        )
    return plan


def purge_expired_transcripts(
    *, actor_label: str, now: datetime | None = None, actor=None
) -> list[SitePurge]:
    """Delete each site's expired conversations (with their messages and ratings) a
    batch at a time, then visitors left with nothing; one audit entry per site that
    lost anything."""
    now = now or timezone.now()
    done = []
    for site in Site.objects.filter(retention_days__isnull=False).order_by("name", "pk"):
        purge = SitePurge(site=site, cutoff=now - timedelta(days=site.retention_days))
        expired = expired_conversations(site, purge.cutoff)
        while True:
            with transaction.atomic():
                batch = list(expired.values_list("pk", flat=True)[:PURGE_BATCH])
                if not batch:
                    break
                purge.messages += Message.objects.filter(conversation_id__in=batch).delete()[0]
                ConversationRating.objects.filter(conversation_id__in=batch).delete()
                purge.conversations += Conversation.objects.filter(pk__in=batch).delete()[0]
        purge.visitors = forgotten_visitors(site, purge.cutoff).delete()[0]
        if purge.conversations or purge.visitors:
            AuditLogEntry.record(
                action=AuditLogEntry.Action.PURGED,
                object_type="site",
                object_id=site.pk,
                actor=actor,
                actor_label=actor_label,
                details={
                    "retention_days": site.retention_days,
                    "closed_before": purge.cutoff.isoformat(),
                    "conversations": purge.conversations,
                    "messages": purge.messages,
                    "visitors": purge.visitors,
                },
            )
            logger.info("purged %s conversations of site %s", purge.conversations, site.pk)
        done.append(purge)
    return done


# --- erasure --------------------------------------------------------------------------


@dataclass
class Erasure:
    visitor_id: int
    conversations: int = 0
    messages: int = 0
    notes: int = 0
    ratings: int = 0
    closed: int = 0
    attachments: int = 0


def visitors_matching(
    *, visitor_id: int | None = None, token: str | None = None, email: str | None = None
) -> QuerySet:
    """The visitors an erasure request names: by id, by the token their browser holds
    (any site), or by email (every visitor who gave it, on any site)."""
    if visitor_id is not None:
        return Visitor.objects.filter(pk=visitor_id)
    if token:
        holder = Visitor.objects.filter(token_hash=hash_token(token)).first()
        # Another device of a verified user: the person is the user's record.
        return Visitor.objects.filter(pk=holder.merged_into_id or holder.pk if holder else None)
    if email:
        return Visitor.objects.filter(email__iexact=email.strip())
    return Visitor.objects.none()


def erase_visitor(*, visitor_id: int, actor_label: str, matched_by: str, actor=None) -> Erasure:
    """Remove what a visitor said and who they are, keep the anonymous counts.

    Their open conversation is closed first (both sides are told, the agent's slot
    frees). Then, in one transaction: the body of every visitor and agent message and of
    every internal note in their conversations becomes "[erased]" (agents quote, address
    and describe visitors, so their lines go too) and client message ids are dropped;
    every attachment in them is deleted, files included;
    ratings with their comments are
    deleted; the visitor keeps only an id and its site (name, email, what their browser
    reported, custom attributes, a verified user id and first/last seen are blanked, the
    token hash, and those of their other devices, replaced by random values nobody holds,
    which also closes their sockets). Conversations stay, with their times, status and agent, so
    chats per day, wait and response times still count them. Admin history lines that
    named the visitor are renamed "Visitor #id".
    """
    erasure = Erasure(visitor_id=visitor_id)
    open_ids = Conversation.objects.filter(
        visitor_id=visitor_id, status__in=Conversation.OPEN_STATUSES
    ).values_list("pk", flat=True)
    for conversation_id in list(open_ids):
        try:
            closing.close_conversation(Actor.system(), conversation_id=conversation_id)
            erasure.closed += 1
        except (ConversationClosed, NotFound):
            pass  # closed meanwhile
    with transaction.atomic():
        visitor = Visitor.objects.select_for_update().get(pk=visitor_id)
        theirs = Conversation.objects.filter(visitor=visitor)
        erasure.conversations = theirs.count()
        erasure.messages = (
            Message.objects.filter(conversation__in=theirs.values("pk"))
            .exclude(sender=SenderKind.SYSTEM)
            .update(body=ERASED_BODY, client_msg_id=None)
        )
        # Agents write about the visitor in their notes too.
        erasure.notes = Note.objects.filter(conversation__in=theirs.values("pk")).update(
            body=ERASED_BODY
        )
        erasure.ratings = ConversationRating.objects.filter(
            conversation__in=theirs.values("pk")
        ).delete()[0]
        # Files either side sent (screenshots, invoices) are about the visitor too; their
        # files leave storage once this commits (chat/attachments.py).
        erasure.attachments = Attachment.objects.filter(
            conversation__in=theirs.values("pk")
        ).delete()[0]
        erased_at = timezone.now()
        # Their other devices' tokens stop working too (identity verification).
        for device in Visitor.objects.filter(merged_into=visitor).values_list("pk", flat=True):
            Visitor.objects.filter(pk=device).update(token_hash=f"erased:{secrets.token_hex(24)}")
        Visitor.objects.filter(pk=visitor.pk).update(
            name="",
            email="",
            attributes={},
            user_id="",
            verified_at=None,
            page_url="",
            page_title="",
            referrer="",
            user_agent="",
            timezone="",
            # Not a sha256 hex digest, so no token can ever hash to it.
            token_hash=f"erased:{secrets.token_hex(24)}",
            first_seen=erased_at,
            last_seen=erased_at,
        )
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(Visitor),
            object_id=str(visitor.pk),
        ).update(object_repr=f"Visitor #{visitor.pk}")
        # Their sockets said hello with a token that no longer exists.
        events.emit_on_commit(events.VisitorTokenRotated(visitor_id=visitor.pk))
        AuditLogEntry.record(
            action=AuditLogEntry.Action.ERASED,
            object_type="visitor",
            object_id=visitor.pk,
            actor=actor,
            actor_label=actor_label,
            details={
                "matched_by": matched_by,
                "conversations": erasure.conversations,
                "messages": erasure.messages,
                "notes": erasure.notes,
                "ratings": erasure.ratings,
                "attachments": erasure.attachments,
                "closed_open_conversations": erasure.closed,
            },
        )
    logger.info("erased visitor %s", visitor_id)
    return erasure
