"""Agent profiles: who answers chats, for which sites, how many at once, whether present."""

from django.conf import settings
from django.db import models


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
