"""The email channel's own records: who writes from which address, each email
conversation's threading state, and the outbox of replies to mail."""

from django.db import models
from django.utils import timezone


class EmailContact(models.Model):
    """A sender's address on a site, and the visitor it is: every new mail from it goes
    to that visitor (its open conversation, else a new one)."""

    site = models.ForeignKey("chat.Site", on_delete=models.CASCADE, related_name="+")
    address = models.CharField(max_length=254)  # lowercased
    visitor = models.ForeignKey("chat.Visitor", on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            # Race: two first mails from one address at once (two receivers); the second
            # insert fails and takes the first's visitor.
            models.UniqueConstraint(fields=["site", "address"], name="one_contact_per_address")
        ]

    def __str__(self) -> str:
        return self.address


class EmailThread(models.Model):
    """One email conversation's threading: the visitor's latest Message-ID (our reply's
    In-Reply-To), the References chain, and how far its agent messages were mailed."""

    conversation = models.OneToOneField(
        "chat.Conversation", on_delete=models.CASCADE, related_name="+", primary_key=True
    )
    last_inbound_id = models.CharField(max_length=998, blank=True)
    references = models.TextField(blank=True)  # Message-IDs, space-separated, oldest first
    # Every agent message up to this seq has its OutboundMail (or needed none).
    mailed_seq = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"Thread of conversation #{self.conversation_id}"


class OutboundMail(models.Model):
    """An agent's reply (one or more messages) to mail to the visitor: made once, in
    the transaction that advances the thread's `mailed_seq`, then sent by any worker,
    retried with backoff until the mail server takes it."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    conversation = models.ForeignKey(
        "chat.Conversation", on_delete=models.CASCADE, related_name="+"
    )
    message_id = models.CharField(max_length=300, unique=True)  # <...@domain>
    from_address = models.CharField(max_length=320)
    to_address = models.CharField(max_length=320)
    reply_to = models.CharField(max_length=320)
    subject = models.CharField(max_length=400)
    in_reply_to = models.CharField(max_length=998, blank=True)
    references = models.TextField(blank=True)
    text = models.TextField()
    html = models.TextField()
    # The agent messages it carries: (first_seq, last_seq] of the conversation.
    first_seq = models.PositiveIntegerField()
    last_seq = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status__in=["pending", "sending"]),
                name="outbound_mail_due",
            )
        ]

    def __str__(self) -> str:
        return f"{self.subject} to {self.to_address} ({self.status})"
