from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class InboxConfig(AppConfig):
    """The email channel: mail in (the SMTP receiver, providers' inbound webhooks) and
    agents' replies out, plugged into the chat core by its services and events."""

    name = "inbox"
    verbose_name = _("Email channel")

    def ready(self) -> None:
        from chat import events

        from . import outbound, webhooks

        # A doorbell only: the sender reads what to mail from the database, so a ring
        # missed (a worker that died) delays a reply to the next turn, never loses it.
        events.subscribe(events.MessageCreated, outbound.ring)
        webhooks.connect()
