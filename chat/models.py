"""Sites, visitors, conversations and their messages: the record every socket recovers from."""

import hashlib
import secrets

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q


def new_site_key() -> str:
    return secrets.token_urlsafe(24)


def new_visitor_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Visitor tokens are stored only as this digest, so a database leak leaks no token."""
    return hashlib.sha256(token.encode()).hexdigest()


class Site(models.Model):
    class WidgetPosition(models.TextChoices):
        RIGHT = "right", "Bottom right"
        LEFT = "left", "Bottom left"

    name = models.CharField(max_length=200)
    key = models.CharField(max_length=64, unique=True, default=new_site_key, editable=False)
    # Exact origins ("https://shop.example") allowed to embed the widget.
    allowed_origins = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # How the widget looks on this site.
    widget_color = models.CharField(
        max_length=7,
        default="#2456d6",
        validators=[RegexValidator(r"^#[0-9a-fA-F]{6}$", "Use a colour like #2456d6.")],
    )
    widget_greeting = models.CharField(
        max_length=200, default="Hi! How can we help you today?", blank=True
    )
    widget_position = models.CharField(
        max_length=5, choices=WidgetPosition.choices, default=WidgetPosition.RIGHT
    )

    def __str__(self) -> str:
        return self.name

    def allows_origin(self, origin: str) -> bool:
        return origin in self.allowed_origins


class Visitor(models.Model):
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="visitors")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name or self.email or f"Visitor #{self.pk}"


class SenderKind(models.TextChoices):
    VISITOR = "visitor"
    AGENT = "agent"
    SYSTEM = "system"


class Conversation(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        ACTIVE = "active"
        CLOSED = "closed"

    OPEN_STATUSES = (Status.QUEUED, Status.ACTIVE)

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="conversations")
    visitor = models.ForeignKey(Visitor, on_delete=models.CASCADE, related_name="conversations")
    agent = models.ForeignKey(
        "agents.AgentProfile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversations",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    # Queue order: re-queued conversations (priority 1) go before new ones, then FIFO.
    queue_priority = models.PositiveSmallIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.CharField(max_length=10, choices=SenderKind.choices, blank=True)
    last_activity_at = models.DateTimeField(auto_now_add=True)
    last_seq = models.PositiveIntegerField(default=0)
    # Read state per side, and how many messages the agent has not read yet
    # (kept in the same UPDATE that allocates a seq, so unread costs no query).
    visitor_read_seq = models.PositiveIntegerField(default=0)
    agent_read_seq = models.PositiveIntegerField(default=0)
    agent_unread = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            # Two tabs starting a chat at once must not open two conversations.
            models.UniqueConstraint(
                fields=["visitor"],
                condition=Q(status__in=["queued", "active"]),
                name="one_open_conversation_per_visitor",
            ),
            models.CheckConstraint(
                condition=Q(status="active", agent__isnull=False)
                | Q(status="queued", agent__isnull=True)
                | Q(status="closed"),
                name="active_has_agent_queued_has_none",
            ),
        ]
        indexes = [
            models.Index(
                fields=["site", "status", "-queue_priority", "queued_at", "id"],
                name="conversation_queue",
            ),
            models.Index(fields=["agent", "status"], name="conversation_agent_load"),
            models.Index(fields=["visitor", "-created_at"], name="conversation_latest"),
            models.Index(fields=["status", "last_activity_at"], name="conversation_idle"),
        ]

    def __str__(self) -> str:
        return f"Conversation #{self.pk} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


class Message(models.Model):
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    seq = models.PositiveIntegerField()
    sender = models.CharField(max_length=10, choices=SenderKind.choices)
    sender_agent = models.ForeignKey(
        "agents.AgentProfile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    body = models.TextField()
    # NULL, not "", for system messages, so the unique constraint ignores them.
    client_msg_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="message_seq_unique"),
            # NULLs are distinct, so system messages (no client id) never collide.
            models.UniqueConstraint(
                fields=["conversation", "client_msg_id"], name="message_client_id_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.sender}: {self.body[:40]}"
