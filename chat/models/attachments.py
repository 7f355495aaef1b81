"""Files sent in a conversation."""

import uuid

from django.db import models

from .conversations import Conversation, Message, SenderKind


def attachment_upload_to(instance: "Attachment", filename: str) -> str:
    # The visitor's file name never becomes a storage path: a random name per file, kept
    # apart per site. `Attachment.name` keeps the original for the download header.
    return f"attachments/{instance.conversation.site_id}/{uuid.uuid4().hex}"


class Attachment(models.Model):
    """A file a participant uploaded into a conversation. It is uploaded first (no
    message yet) and becomes part of the conversation when a message names it."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="attachments"
    )
    message = models.OneToOneField(
        Message, on_delete=models.CASCADE, null=True, blank=True, related_name="attachment"
    )
    uploaded_by = models.CharField(max_length=10, choices=SenderKind.choices)
    uploaded_by_agent = models.ForeignKey(
        "agents.AgentProfile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    file = models.FileField(upload_to=attachment_upload_to)
    # Images only: a small preview, also stored through the storage API.
    thumbnail = models.FileField(upload_to=attachment_upload_to, blank=True)
    name = models.CharField(max_length=255)
    # Detected from the content, never taken from the upload's header.
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["message", "created_at"], name="attachment_pending")]

    def __str__(self) -> str:
        return f"{self.name} ({self.content_type}, {self.size} B)"

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")
