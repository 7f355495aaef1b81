"""The events kept for delivery to webhooks, and which sites want them."""

from django.db import models
from django.utils import timezone

from .conversations import Conversation
from .sites import Site


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
