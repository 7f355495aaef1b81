from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        # Connects the receiver that deletes an attachment's files with its row.
        from . import attachments  # noqa: F401
