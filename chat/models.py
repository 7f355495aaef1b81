"""Sites, visitors, conversations and their messages: the record every socket recovers from."""

import hashlib
import secrets
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


def new_site_key() -> str:
    # Never starting with "-": operators pass it as `create_agent --site KEY`, where
    # argparse would read such a key as an option (1 key in 64 otherwise).
    while True:
        key = secrets.token_urlsafe(24)
        if not key.startswith("-"):
            return key


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
    # Empty: each visitor's widget follows their browser (or the embed's data-lang).
    widget_language = models.CharField(
        max_length=8,
        choices=settings.LANGUAGES,
        blank=True,
        help_text="Always show the widget in this language. Empty: the visitor's browser "
        "language, or the embed tag's data-lang (docs/languages.md).",
    )
    # `manage.py purge_transcripts` deletes this site's closed conversations older than
    # this; empty keeps them forever.
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Delete closed conversations this many days after they closed "
        "(manage.py purge_transcripts). Empty keeps them forever.",
    )
    # Sneak peek: the assigned agent sees the visitor's draft before it is sent. The
    # widget discloses it in its privacy line whenever this is on.
    sneak_peek = models.BooleanField(
        default=True,
        help_text="Agents see what visitors type before they send it; the widget says so.",
    )
    # The queue's wait estimate divides the site's median chat length by the free slots;
    # until the site has closed chats to learn from, this length stands in.
    typical_chat_minutes = models.PositiveSmallIntegerField(
        default=5,
        help_text="How long a chat usually takes, for the queue's wait estimate until "
        "there are recent chats to learn from.",
    )
    # Agents may take a waiting chat from the queue themselves, out of routing's order.
    agents_pick_from_queue = models.BooleanField(
        default=False,
        help_text="Agents may take a chat from the queue themselves, not only be given one.",
    )
    # Identity verification: the site's server signs its signed-in user's id with this
    # (HMAC-SHA256) and the widget passes the signature on; empty: off. Kept in clear,
    # like any HMAC key: both sides must hold it. `manage.py identity_secret`.
    identity_secret = models.CharField(max_length=64, blank=True, editable=False)
    # The email channel: mail to this address opens (or continues) an email
    # conversation, and replies to those go out from it; empty: no email channel.
    # `create_site --inbound-email`, or the admin. One site per address.
    inbound_email = models.EmailField(
        blank=True,
        help_text="Mail to this address opens a conversation (the email channel); agents' "
        "replies are sent from it. Empty: no email channel.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["inbound_email"],
                condition=~Q(inbound_email=""),
                name="one_site_per_inbound_email",
                violation_error_message="Another site already receives mail at this address.",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # Lowercased before the unique constraint is checked: one site per address,
        # however it is written. The `+` part is the reply token's (chat/reply_address.py).
        self.inbound_email = self.inbound_email.strip().lower()
        if "+" in self.inbound_email.partition("@")[0]:
            raise ValidationError(
                {"inbound_email": _("The address may not hold a '+': replies use it.")}
            )

    def allows_origin(self, origin: str) -> bool:
        return origin in self.allowed_origins


class SiteText(models.Model):
    """A site's own widget texts in one language, in place of the defaults (an empty
    field keeps the default; docs/languages.md)."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="texts")
    language = models.CharField(max_length=8, choices=settings.LANGUAGES)
    greeting = models.CharField(max_length=200, blank=True)
    offline_text = models.CharField(
        max_length=300, blank=True, help_text="Above the offline form when no agent is online."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "language"], name="site_text_one_per_language")
        ]

    def __str__(self) -> str:
        return f"{self.site} ({self.language})"


class Visitor(models.Model):
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="visitors")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now_add=True)
    # Context for the agent, reported by the widget: the page the visitor is on (updated as
    # they browse), where they came from, their browser and their time zone (IANA name).
    page_url = models.URLField(max_length=2000, blank=True)
    page_title = models.CharField(max_length=300, blank=True)
    referrer = models.URLField(max_length=2000, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    timezone = models.CharField(max_length=64, blank=True)
    # The language the widget last spoke to this visitor (their transcript email's).
    language = models.CharField(max_length=8, choices=settings.LANGUAGES, blank=True)
    # What another system (a CRM, through the REST API) knows of the visitor: a flat
    # object of short strings, numbers and booleans (integrations/api.py checks it).
    attributes = models.JSONField(default=dict, blank=True)
    MAX_ATTRIBUTES = 50
    # A signed-in user of the site, as its server vouched (identity verification): set
    # on one visitor per site and user, the person's record on every device.
    user_id = models.CharField(max_length=200, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    # Another device of a verified user: this row only holds that device's token, which
    # stands for `merged_into` everywhere (chat/conversations/identity.py).
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="devices"
    )

    class Meta:
        constraints = [
            # Race: two devices of one user verified at once both try to become the
            # user's record; the second gets IntegrityError and joins the first.
            models.UniqueConstraint(
                fields=["site", "user_id"],
                condition=~Q(user_id=""),
                name="one_visitor_per_verified_user",
            )
        ]

    def __str__(self) -> str:
        return self.name or self.email or f"Visitor #{self.pk}"


class SocketWorker(models.Model):
    """A worker holding visitor sockets, with its heartbeat: its sockets count as open
    while `seen_at` is younger than SUPPORTDESK_VISITOR_SOCKET_TTL (one beat a worker,
    however many widgets it holds: chat/conversations/visitor_sockets.py)."""

    name = models.CharField(max_length=32, unique=True)  # drawn by the process at start
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"worker {self.name}"


class VisitorSocket(models.Model):
    """One open widget socket of a visitor, on whichever worker holds it: deleted when
    the socket closes, and counted only while its worker's heartbeat is fresh, so a
    worker killed with kill -9 leaves none counted once the TTL has passed."""

    visitor = models.ForeignKey(Visitor, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=200, unique=True)  # unique across workers
    # No database constraint: the sweep deletes a dead worker's row, then its sockets,
    # and a worker back from a long database outage beats beside rows that may still
    # be there; neither order may fail a visitor's hello.
    worker = models.ForeignKey(
        SocketWorker, to_field="name", db_constraint=False, on_delete=models.DO_NOTHING
    )

    class Meta:
        indexes = [models.Index(fields=["visitor"], name="visitor_socket_visitor")]

    def __str__(self) -> str:
        return f"visitor {self.visitor_id} socket {self.channel}"


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


class Call(models.Model):
    """A voice or video call inside a conversation: its signaling state only. Media flows
    peer to peer between the two browsers and never through a worker; nothing of it is
    stored. Every change to a conversation's calls is made under the conversation's row
    lock (chat/conversations/calls.py), so an answer, a timeout and a hang-up that race
    each other across workers are decided once, in commit order."""

    class Media(models.TextChoices):
        AUDIO = "audio"
        VIDEO = "video"

    class Status(models.TextChoices):
        RINGING = "ringing"  # invited, not answered yet
        ACTIVE = "active"  # accepted: the two browsers connect and talk
        ENDED = "ended"

    class Reason(models.TextChoices):
        HANGUP = "hangup"
        DECLINED = "declined"
        TIMEOUT = "timeout"
        DISCONNECTED = "disconnected"

    LIVE_STATUSES = (Status.RINGING, Status.ACTIVE)
    # What a socket's channel name may hold (channels' own names are far shorter).
    MAX_CHANNEL_CHARS = 200

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="calls")
    # The agent who placed the call (the conversation's agent at the time).
    agent = models.ForeignKey(
        "agents.AgentProfile", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    media = models.CharField(max_length=5, choices=Media.choices)
    status = models.CharField(max_length=7, choices=Status.choices, default=Status.RINGING)
    # The sockets that hold the call's media on each side: the dashboard tab that placed
    # it and the widget tab that accepted it. Signals go to these only, and either one
    # closing ends the call (the media lives in that tab).
    agent_channel = models.CharField(max_length=MAX_CHANNEL_CHARS)
    visitor_channel = models.CharField(max_length=MAX_CHANNEL_CHARS, blank=True)
    invited_at = models.DateTimeField()
    # An invitation still ringing then has timed out (the worker's timer, or any
    # worker's sweep if that one died).
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=12, choices=Reason.choices, blank=True)
    ended_by = models.CharField(max_length=10, choices=SenderKind.choices, blank=True)

    class Meta:
        constraints = [
            # One call per conversation at a time: two invitations racing on two workers
            # cannot both be stored (the conversation's lock orders them first; this is
            # the invariant's own guard).
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(status__in=["ringing", "active"]),
                name="call_one_live_per_conversation",
            ),
            models.CheckConstraint(
                condition=Q(status="ended", ended_at__isnull=False)
                | Q(status__in=["ringing", "active"], ended_at__isnull=True),
                name="call_ended_has_ended_at",
            ),
        ]
        indexes = [
            # Live calls (a handful at any time), for the sweep: invitations past their
            # deadline, calls whose conversation moved on without them.
            models.Index(
                fields=["expires_at"],
                condition=Q(status__in=["ringing", "active"]),
                name="call_live",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.media} call #{self.pk} ({self.status})"


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


class DurableEvent(models.Model):
    """A domain event kept for a subscriber that must not miss it across a restart (the
    webhooks): written in the same transaction as its cause, taken and deleted by that
    subscriber. Only written for the sites and types an `EventInterest` names."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=40)  # the public name: "message.created", ...
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, null=True, related_name="+"
    )
    # message.created: the message itself, read when the event is taken.
    message = models.ForeignKey("Message", on_delete=models.CASCADE, null=True, related_name="+")
    # The other events: what they said, as they said it.
    payload = models.JSONField(null=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.type} #{self.pk}"


class EventInterest(models.Model):
    """A site's events of one type are kept as `DurableEvent`s (a webhook endpoint
    subscribed to them)."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=40)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "type"], name="event_interest_unique")
        ]

    def __str__(self) -> str:
        return f"{self.type} at site {self.site_id}"


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


class AuditLogEntry(models.Model):
    """Who did what to which record: transcripts viewed or exported, data purged or
    erased. Append-only; it names records by type and id and never copies their content,
    so erasing a visitor leaves nothing of them here."""

    class Action(models.TextChoices):
        VIEWED = "viewed", _("viewed")
        EXPORTED = "exported", _("exported")
        PURGED = "purged", _("purged")
        ERASED = "erased", _("erased")

    # NULL for management commands; `actor_label` keeps the name after a user is deleted.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("actor"),
    )
    actor_label = models.CharField(_("who"), max_length=150)
    action = models.CharField(_("action"), max_length=10, choices=Action.choices)
    object_type = models.CharField(_("object type"), max_length=50)
    # Empty for entries about many records (an export); `details` then lists them.
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    details = models.JSONField(_("details"), default=dict, blank=True)
    created_at = models.DateTimeField(_("when"), auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("audit log entry")
        verbose_name_plural = _("audit log entries")
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
            models.Index(fields=["-created_at"], name="audit_recent"),
        ]

    def __str__(self) -> str:
        target = f"{self.object_type} #{self.object_id}" if self.object_id else self.object_type
        return f"{self.actor_label} {self.action} {target}"

    @classmethod
    def record(
        cls,
        *,
        action: str,
        object_type: str,
        object_id: object = "",
        actor=None,
        actor_label: str = "",
        details: dict | None = None,
    ) -> "AuditLogEntry":
        """One entry; `actor` is a user (e.g. `request.user`), or None with a label
        such as "manage.py purge_transcripts"."""
        if actor is not None and not actor_label:
            actor_label = actor.get_username()
        return cls.objects.create(
            actor=actor,
            actor_label=actor_label or "system",
            action=action,
            object_type=object_type,
            object_id="" if object_id in ("", None) else str(object_id),
            details=details or {},
        )
