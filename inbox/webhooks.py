"""Providers' inbound webhooks (Mailgun, Postmark, SendGrid, ... through django-anymail,
mounted at /anymail/): anymail checks the provider's signature and hands over the mail,
which then goes the same way as one the SMTP receiver took (`receiving.receive`).

A mail that cannot become a message is logged and answered 200 (the provider would
retry it forever); a limit or a database failure raises, so the provider answers to a
5xx by trying again later.
"""

import logging

from anymail.signals import inbound
from django.conf import settings

from . import parsing, receiving

logger = logging.getLogger(__name__)


def on_inbound(sender, event, esp_name, **kwargs) -> None:
    message = event.message
    recipients = [message.envelope_recipient] if message.envelope_recipient else []
    if not recipients:
        recipients = parsing.addresses(message.get_all("To", []) + message.get_all("Cc", []))
    try:
        mail = parsing.parse_message(
            message,
            envelope_sender=message.envelope_sender,
            authserv_id=settings.SUPPORTDESK_MAIL_AUTHSERV_ID,
        )
        delivered = receiving.receive(mail, recipients=recipients)
    except parsing.Unreadable as exc:
        logger.info("%s inbound mail dropped: %s", esp_name, exc)
        return
    if not delivered:
        logger.info("%s inbound mail to %s: no site has that address", esp_name, recipients)


def connect() -> None:
    inbound.connect(on_inbound, dispatch_uid="inbox.webhooks.on_inbound")
