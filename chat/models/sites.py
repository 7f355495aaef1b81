"""Sites and their visitors, and which visitors have the widget open on which worker."""

import hashlib
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


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
