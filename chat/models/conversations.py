"""Conversations, their assignments, messages, notes and ratings: the record every
socket recovers from."""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from .sites import Site, Visitor


class SenderKind(models.TextChoices):
    VISITOR = "visitor", _("visitor")
    AGENT = "agent", _("agent")
    SYSTEM = "system", _("system")
    # A site's knowledge-base bot (the `kb` app posts its answers through
    # conversations.sending.post_bot_message).
    BOT = "bot", _("bot")


class Conversation(models.Model):
    # Labels in the admin's language (the dashboard words statuses the same way).
    class Status(models.TextChoices):
        QUEUED = "queued", pgettext_lazy("conversation", "queued")
        ACTIVE = "active", pgettext_lazy("conversation", "active")
        CLOSED = "closed", pgettext_lazy("conversation", "closed")
        # Answered by the site's bot: neither queued nor routed until it is handed off
        # (conversations.routing.hand_off), and then routed like a new chat.
        BOT = "bot", pgettext_lazy("conversation", "with the bot")

    class Channel(models.TextChoices):
        """How the visitor reaches us: the widget's socket, or email (agents' replies to
        an email conversation are mailed to the visitor's address)."""

        CHAT = "chat", pgettext_lazy("channel", "Chat")
        EMAIL = "email", pgettext_lazy("channel", "Email")

    OPEN_STATUSES = (Status.QUEUED, Status.ACTIVE, Status.BOT)

    site = models.ForeignKey(
        Site, on_delete=models.CASCADE, related_name="conversations", verbose_name=_("site")
    )
    visitor = models.ForeignKey(
        Visitor, on_delete=models.CASCADE, related_name="conversations", verbose_name=_("visitor")
    )
    agent = models.ForeignKey(
        "agents.AgentProfile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversations",
        verbose_name=_("agent"),
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    # The agent who sent this chat back to the queue (a transfer to nobody): routing
    # offers it to the others first (conversations.routing.lock_agent_for); cleared on assignment.
    handed_back_by = models.ForeignKey(
        "agents.AgentProfile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # Queue order: re-queued conversations (priority 1) go before new ones, then FIFO.
    queue_priority = models.PositiveSmallIntegerField(default=0)
    queued_at = models.DateTimeField(_("queued at"), null=True, blank=True)
    # Set by the service that opens the conversation, from the one `now` its queued_at
    # and (when an agent is free at once) assigned_at also take: never a second clock.
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    assigned_at = models.DateTimeField(_("assigned at"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    closed_by = models.CharField(
        _("closed by"), max_length=10, choices=SenderKind.choices, blank=True
    )
    last_activity_at = models.DateTimeField(
        _("last activity at"), default=timezone.now, editable=False
    )
    last_seq = models.PositiveIntegerField(_("last seq"), default=0)
    # Read state per side, and how many messages the agent has not read yet
    # (kept in the same UPDATE that allocates a seq, so unread costs no query).
    visitor_read_seq = models.PositiveIntegerField(_("visitor read seq"), default=0)
    agent_read_seq = models.PositiveIntegerField(_("agent read seq"), default=0)
    agent_unread = models.PositiveIntegerField(_("agent unread"), default=0)
    channel = models.CharField(
        _("channel"), max_length=5, choices=Channel.choices, default=Channel.CHAT
    )
    # Email conversations: the subject of the first mail, and who wrote the latest one
    # as its From header said it ("Ann <ann@example.com>"), with whether the upstream
    # server's SPF or DKIM check vouched for that address (else agents see it unverified).
    subject = models.CharField(max_length=300, blank=True)
    sender_address = models.CharField(max_length=320, blank=True)
    sender_verified = models.BooleanField(default=False)

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        constraints = [
            # Two tabs starting a chat at once must not open two conversations.
            models.UniqueConstraint(
                fields=["visitor"],
                condition=Q(status__in=["queued", "active", "bot"]),
                name="one_open_conversation_per_visitor",
            ),
            models.CheckConstraint(
                condition=Q(status="active", agent__isnull=False)
                | Q(status__in=["queued", "bot"], agent__isnull=True)
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
            # Open conversations, for the idle sweep (closing.close_idle_conversations).
            # No index may hold a column every message changes (last_seq,
            # last_activity_at, the unread and read counts): then PostgreSQL updates
            # the row in place (a HOT update) instead of writing an entry into each of
            # the table's ten indexes for every message (docs/performance.md, change 12).
            models.Index(
                fields=["id"],
                condition=Q(status__in=["queued", "active", "bot"]),
                name="conversation_open",
            ),
            # Analytics and transcript filters select conversations by when they started.
            models.Index(fields=["created_at"], name="conversation_created"),
        ]

    def __str__(self) -> str:
        return f"Conversation #{self.pk} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


class Assignment(models.Model):
    """One agent's turn with a conversation: from being given it (routing, a transfer, a
    pick from the queue) until it ended (closed, transferred on, back to the queue). The
    transcript's lifecycle and the widget's "joined" lines are read from these."""

    class Ended(models.TextChoices):
        CLOSED = "closed"
        TRANSFERRED = "transferred"  # to a named colleague
        HANDED_BACK = "handed_back"  # the agent sent it back to the queue
        REQUEUED = "requeued"  # the agent was lost (heartbeat lapsed) or removed

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="assignments"
    )
    agent = models.ForeignKey(
        "agents.AgentProfile", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    started_at = models.DateTimeField()
    # The last message before the agent joined: the join sits after it.
    after_seq = models.PositiveIntegerField()
    ended_at = models.DateTimeField(null=True, blank=True)
    ended = models.CharField(max_length=12, choices=Ended.choices, blank=True)

    class Meta:
        ordering = ["conversation", "started_at", "id"]
        constraints = [
            # A conversation has one agent at a time: one turn open at most.
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(ended_at__isnull=True),
                name="assignment_one_open_per_conversation",
            )
        ]

    def __str__(self) -> str:
        return f"{self.agent or 'an agent'} on conversation #{self.conversation_id}"


class Message(models.Model):
    # A body is 1-10,000 characters once trimmed, from a socket, the offline form or a
    # canned response alike (agents' CannedResponse.MAX_BODY_CHARS is no more than this).
    MAX_BODY_CHARS = 10_000

    # No index of its own: the unique (conversation, seq) index serves every lookup by
    # conversation, and one index fewer is one write fewer per message.
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages", db_index=False
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
    # A system message's sentence as a code and its parameters (chat/system_messages.py),
    # so each reader gets it in their language; `body` keeps the English. The database
    # default serves the send path's INSERT, which names its columns (chat/store/sql.py).
    system_code = models.CharField(max_length=32, blank=True, default="", db_default="")
    system_params = models.JSONField(null=True, blank=True)
    # NULL, not "", for system messages, so the unique constraint ignores them.
    client_msg_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    # The time the service stored it, the `sent_at` of the wire.
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # A bot's answer only: the articles it answered from, `[{"id", "title"}]` as they
    # were titled then (the wire's `sources`); NULL for every other message.
    sources = models.JSONField(null=True, blank=True)

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


class Note(models.Model):
    """An agent's internal note on a conversation: seen by agents only, never by the
    visitor. Notes take no `seq` (the visitor's seq stream stays gapless); `after_seq`
    places one among the messages, and `id` orders notes."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        "agents.AgentProfile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    body = models.TextField()
    client_msg_id = models.CharField(max_length=64)
    # The conversation's last_seq when the note was written.
    after_seq = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_msg_id"], name="note_client_id_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"Note on #{self.conversation_id}: {self.body[:40]}"


class ConversationRating(models.Model):
    """The visitor's verdict on a chat (CSAT, 1 to 5), at most one per conversation."""

    conversation = models.OneToOneField(
        Conversation, on_delete=models.CASCADE, related_name="rating"
    )
    score = models.PositiveSmallIntegerField()
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(score__gte=1, score__lte=5), name="rating_score_1_to_5"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.score}/5 for conversation #{self.conversation_id}"
