"""A chat's transcript mailed to the visitor who asks for it (the widget's "Email me
the transcript"), as plain text and HTML, through Django's email backend.

Messages only (visitor, agent and system): internal notes live in another table and
are never read here. Building reads the database (the services call it on a database
thread); sending talks to the mail server and runs on a thread of its own
(`chat.transport.consumers.VisitorConsumer`), never on the event loop or a database thread.
"""

import logging
import zoneinfo
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _

from . import reply_address, system_messages
from .models import Conversation, Message, SenderKind

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TranscriptEmail:
    conversation_id: int
    to: str
    message: EmailMultiAlternatives


def _zone(name: str) -> zoneinfo.ZoneInfo:
    """The visitor's own time zone for the times in the mail (UTC if it never said)."""
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def build(conversation: Conversation, *, to: str) -> TranscriptEmail:
    """The mail for one conversation, not sent yet. Two queries (site and visitor with
    the conversation, then its messages with their agents' names)."""
    conversation = Conversation.objects.select_related("site", "visitor").get(pk=conversation.pk)
    # In the language the visitor's widget spoke (Visitor.language), whoever sends it.
    with translation.override(conversation.visitor.language or settings.LANGUAGE_CODE):
        return _build(conversation, to=to)


def _build(conversation: Conversation, *, to: str) -> TranscriptEmail:
    site, visitor = conversation.site, conversation.visitor
    zone = _zone(visitor.timezone)
    rows = (
        Message.objects.filter(conversation_id=conversation.pk)
        .select_related("sender_agent")
        .order_by("seq")
    )
    lines = []
    for message in rows:
        if message.sender == SenderKind.VISITOR:
            who = _("You")
        elif message.sender == SenderKind.AGENT:
            who = message.sender_agent.display_name if message.sender_agent else _("Agent")
        elif message.sender == SenderKind.BOT:
            who = _("%(site)s assistant") % {"site": site.name}
        else:
            who = site.name
        lines.append(
            {
                "who": who,
                "sender": message.sender,
                "time": message.created_at.astimezone(zone),
                "body": system_messages.sentence(
                    message.system_code, message.system_params, message.body
                )
                if message.sender in (SenderKind.SYSTEM, SenderKind.BOT)
                else message.body,
            }
        )
    context = {
        "site_name": site.name,
        "conversation": conversation,
        "started": conversation.created_at.astimezone(zone),
        "zone": str(zone),
        "lines": lines,
    }
    mail = EmailMultiAlternatives(
        subject=_("Your chat with %(site)s") % {"site": site.name},
        body=render_to_string("chat/transcript_email.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
    )
    if site.inbound_email:
        # The site has an email channel: an answer to the transcript comes back to this
        # conversation (or, closed, opens the visitor's next one) by its reply address
        # and Message-ID (chat/reply_address.py).
        mail.from_email = site.inbound_email
        mail.reply_to = [reply_address.reply_address(site.inbound_email, conversation.pk)]
        domain = site.inbound_email.rpartition("@")[2]
        mail.extra_headers["Message-ID"] = reply_address.message_id(conversation.pk, domain=domain)
    mail.attach_alternative(render_to_string("chat/transcript_email.html", context), "text/html")
    return TranscriptEmail(conversation_id=conversation.pk, to=to, message=mail)


def send(transcript: TranscriptEmail) -> bool:
    """Hand the mail to the backend; False (logged) if it refused or failed."""
    try:
        return bool(transcript.message.send(fail_silently=False))
    except Exception:
        logger.exception("transcript of conversation %s: mail failed", transcript.conversation_id)
        return False
