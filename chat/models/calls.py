"""A conversation's voice and video calls: their signaling state, never their media."""

from django.db import models
from django.db.models import Q

from .conversations import Conversation, SenderKind


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
