"""API keys and webhook endpoints of a site, and the webhook deliveries (the outbox)."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from chat.models import Site


class ApiKey(models.Model):
    """A key another system (a CRM, a helpdesk, a script) uses on the REST API of one
    site. Only its hash is stored: the key is shown once, when it is made."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True, help_text="What uses it, e.g. CRM.")
    # The first characters, to tell keys apart (the admin, logs); not enough to use it.
    prefix = models.CharField(max_length=16, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"


class WebhookEndpoint(models.Model):
    """A URL of another system that hears a site's events, signed per Standard
    Webhooks with this endpoint's secret."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    # The event types it hears; empty: every one.
    events = models.JSONField(default=list, blank=True)
    secret = models.CharField(max_length=100, editable=False)
    # After a rotation the old secret signs too, for a day, so a receiver can switch over.
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_until = models.DateTimeField(null=True, blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    # Since when every delivery failed; after 24 h of that the endpoint is switched off.
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=300, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return self.url

    def hears(self, event_type: str) -> bool:
        return not self.events or event_type in self.events


class WebhookDelivery(models.Model):
    """One event for one endpoint: the outbox row, from its first attempt until it was
    delivered or given up on. The body is fixed when the row is made, so every attempt
    sends the same bytes under the same `webhook-id`."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"  # claimed by a worker until `lease_until`
        DELIVERED = "delivered"
        FAILED = "failed"  # given up after the retry period

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    # The kept event's id: a conversation's events in the order they committed.
    event_id = models.BigIntegerField()
    type = models.CharField(max_length=40)
    conversation_id = models.BigIntegerField(null=True)
    body = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "sending"]),
                name="webhook_delivery_due",
            ),
            models.Index(
                fields=["endpoint", "conversation_id", "event_id"], name="webhook_delivery_order"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} to {self.endpoint_id} ({self.status})"

    @property
    def webhook_id(self) -> str:
        """The `webhook-id` header: the same on every attempt."""
        return f"msg_{self.pk}"
