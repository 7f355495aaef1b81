"""The SMTP receiver `receive_mail` runs (aiosmtpd): the piece a company's mail server
(Postfix, Exim) or provider hands the site's mail to.

It answers every mail only once it is stored (250 after the commit), so a receiver
stopped or killed mid-mail loses nothing: the sending server still holds the mail
and tries again. Its answers say what happened:
- 550 5.1.1 at RCPT: not an address of any site here (nothing is accepted for it);
- 552 (aiosmtpd): over the SIZE limit, said in EHLO and checked at MAIL and DATA;
- 550 5.6.0: a mail that cannot become a message (no sender, no text);
- 451 4.7.1: over a sender's or a site's limit, try later; 451 4.3.0: the database
  failed, try later;
- 250: stored, or dropped on purpose (an auto-reply, a bounce: answering one would
  start a mail loop, and refusing it would make another bounce).
"""

import logging

from aiosmtpd.smtp import SMTP, Envelope, Session
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections

from . import parsing, receiving

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 20


def _in_database(fn):
    """`fn` on the receiver's one database thread, with a connection that is checked
    before use (a database restart between two mails is survived)."""

    def call(*args, **kwargs):
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(call, thread_sensitive=True)


class MailHandler:
    """aiosmtpd's handler: RCPT and DATA decide."""

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server, session: Session, envelope: Envelope, address, options
    ):
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        try:
            site = await _in_database(receiving.site_for_address)(address)
        except DatabaseError:
            logger.exception("RCPT %s: database unavailable", address)
            return "451 4.3.0 Temporary failure, try again later"
        if site is None:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server, session: Session, envelope: Envelope
    ):
        raw = envelope.original_content or envelope.content
        try:
            mail = parsing.parse_bytes(
                raw,
                envelope_sender=envelope.mail_from or "",
                authserv_id=settings.SUPPORTDESK_MAIL_AUTHSERV_ID,
            )
            delivered = await _in_database(receiving.receive)(mail, recipients=envelope.rcpt_tos)
        except parsing.Unreadable as exc:
            logger.info("mail from %s refused: %s", envelope.mail_from, exc)
            return f"550 5.6.0 {exc}"
        except receiving.TryLater as exc:
            return (
                "451 4.7.1 Too much mail from this sender or to this site;"
                f" try again in {exc.retry_after} s"
            )
        except DatabaseError:
            logger.exception("mail from %s: database unavailable", envelope.mail_from)
            return "451 4.3.0 Temporary failure, try again later"
        except Exception:
            # A fault of ours, not the mail's: the sending server keeps it and retries
            # (and bounces it to its sender if that never succeeds), nothing half-stored.
            logger.exception("mail from %s could not be stored", envelope.mail_from)
            return "451 4.3.0 Temporary failure, try again later"
        if all(d.dropped for d in delivered):
            return "250 2.0.0 Accepted (automatic mail: not answered)"
        return "250 2.0.0 Accepted"


def smtp_server(*, hostname: str | None = None) -> SMTP:
    return SMTP(
        MailHandler(),
        data_size_limit=settings.SUPPORTDESK_MAIL_MAX_BYTES,
        enable_SMTPUTF8=True,
        decode_data=False,
        hostname=hostname,
        ident="supportdesk receive_mail",
    )
