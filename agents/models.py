"""Agent profiles: who answers chats, for which sites, how many at once, whether present."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q


class AgentProfile(models.Model):
    class Status(models.TextChoices):
        AVAILABLE = "available"
        AWAY = "away"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_profile"
    )
    display_name = models.CharField(max_length=100)
    capacity = models.PositiveSmallIntegerField(default=3, help_text="Concurrent chats.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.AWAY)
    # True while `status` is AWAY because the agent was idle (SUPPORTDESK_AUTO_AWAY_SECONDS),
    # not by choice: activity makes such an agent available again, a chosen away stays.
    auto_away = models.BooleanField(default=False)
    # Presence is this timestamp, refreshed by the agent's open sockets, never "a socket
    # exists": a worker killed with -9 leaves no socket to say goodbye.
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    # Routing tie-break: among equally loaded agents the one idle longest goes first.
    last_assigned_at = models.DateTimeField(null=True, blank=True)
    # Empty means the agent serves every site.
    sites = models.ManyToManyField("chat.Site", blank=True, related_name="agents")
    # A supervisor may also read (`sync`) any conversation of the sites they serve, to
    # follow a colleague's chat; writing stays with the assigned agent.
    is_supervisor = models.BooleanField(
        default=False,
        help_text="May read every conversation of the sites this agent serves.",
    )

    class Meta:
        indexes = [models.Index(fields=["status", "last_heartbeat"], name="agent_routable")]

    def __str__(self) -> str:
        return self.display_name

    def public_dict(self) -> dict:
        return {"display_name": self.display_name}


class CannedResponse(models.Model):
    """A reply snippet an agent expands in the composer by typing `/shortcut`. With no
    owner it is shared by every agent; an agent's own snippet wins over a shared one with
    the same shortcut."""

    # The body is sent as a message, so it is no longer than a message may be
    # (chat.models.Message.MAX_BODY_CHARS; tests/test_features_canned.py holds it there).
    MAX_BODY_CHARS = 10_000

    owner = models.ForeignKey(
        AgentProfile,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="canned_responses",
        help_text="Empty: shared with every agent.",
    )
    shortcut = models.CharField(
        max_length=32,
        validators=[
            RegexValidator(
                r"^[a-z0-9][a-z0-9_-]*$",
                "Lowercase letters, digits, - and _, e.g. refund or opening-hours.",
            )
        ],
    )
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["shortcut"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "shortcut"], name="canned_shortcut_unique_per_agent"
            ),
            # NULL owners are distinct in the constraint above, so shared ones need their own.
            models.UniqueConstraint(
                fields=["shortcut"],
                condition=Q(owner__isnull=True),
                name="canned_shortcut_unique_shared",
            ),
        ]

    def __str__(self) -> str:
        return f"/{self.shortcut}"
