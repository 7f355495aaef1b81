"""The widget's offline form: validating what the visitor left, and telling the site's
agents by email (Django's email backend: the console in DEBUG, locmem in tests)."""

import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from wording import grouped_number

from . import languages, protocol, selectors
from .models import Site, Visitor

logger = logging.getLogger(__name__)

MAX_NAME_CHARS = 200
MAX_EMAIL_CHARS = 254


class Invalid(Exception):
    """A field of the form is missing or wrong; the message says which."""


def clean(payload: dict) -> tuple[str, str, str]:
    """(name, email, question) from the form's JSON, trimmed, or `Invalid`."""
    name = payload.get("name")
    email = payload.get("email")
    question = payload.get("question")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME_CHARS:
        raise Invalid(
            pgettext("offline form", "name must be 1-%(limit)s characters.")
            % {"limit": MAX_NAME_CHARS}
        )
    if not isinstance(email, str) or len(email.strip()) > MAX_EMAIL_CHARS:
        raise Invalid(pgettext("offline form", "email must be an email address."))
    try:
        validate_email(email.strip())
    except ValidationError:
        raise Invalid(pgettext("offline form", "email must be an email address.")) from None
    for field, value in (("name", name), ("email", email), ("question", question)):
        if not protocol.storable(value):
            raise Invalid(protocol.UNSTORABLE_TEXT % {"field": field})
    if not isinstance(question, str) or not question.strip():
        raise Invalid(pgettext("offline form", "question must not be empty."))
    if len(question.strip()) > protocol.MAX_BODY_CHARS:
        limit = grouped_number(protocol.MAX_BODY_CHARS)
        raise Invalid(
            pgettext("offline form", "question is over %(limit)s characters.") % {"limit": limit}
        )
    return name.strip(), email.strip(), question.strip()


def email_agents(*, site: Site, visitor: Visitor, conversation_id: int, question: str) -> int:
    """Mail the question to every active agent of the site who has an address; returns
    how many were sent. A mail failure is logged, never raised: the conversation is
    stored and agents see it in the dashboard or admin anyway."""
    recipients = selectors.site_agent_emails(site.id)
    if not recipients:
        logger.warning("offline message on site %s: no agent has an email address", site.id)
        return 0
    # In the site's language: an agent's own choice lives in their browser's cookie only.
    with translation.override(languages.site_language(site)):
        subject = _("[%(site)s] Offline message from %(name)s") % {
            "site": site.name,
            "name": visitor.name,
        }
        intro = _(
            "%(name)s <%(email)s> left a message on %(site)s while no agent was online "
            "(conversation #%(id)s):"
        ) % {"name": visitor.name, "email": visitor.email, "site": site.name, "id": conversation_id}
        outro = _("Reply to them by email, or in the dashboard if they come back.")
    body = f"{intro}\n\n{question}\n\n{outro}"
    try:
        message = EmailMessage(
            subject,
            body,
            settings.DEFAULT_FROM_EMAIL,
            recipients,
            reply_to=[visitor.email],
        )
        return message.send(fail_silently=False) and len(recipients)
    except Exception:
        logger.exception("offline message on site %s: mail to agents failed", site.id)
        return 0
