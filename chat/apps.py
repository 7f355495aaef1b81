from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = _("Chat")

    def ready(self) -> None:
        # Connects the receiver that deletes an attachment's files with its row.
        from . import (
            attachments,  # noqa: F401
            receivers,
        )
        from .realtime import fanout
        from .store import durable
        from .transport import broadcasting

        receivers.connect()
        # Kept in the transaction of their cause for subscribers that must not miss one.
        durable.connect()
        # Who hears of the domain events (chat/events.py): the sockets, and the
        # scheduler of queue readings.
        fanout.connect()
        broadcasting.connect()
