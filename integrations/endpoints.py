"""Webhook endpoints: added (their signing secret shown once), rotated, and what the core
keeps for them (chat/store/durable.py: only the event types some endpoint of the site
hears are kept)."""

import base64
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from chat.models import Site
from chat.store import durable

from .models import WebhookEndpoint

EVENT_TYPES = durable.TYPES
# How long a rotated-out secret still signs, so a receiver can switch over.
ROTATION_OVERLAP = timedelta(hours=24)


class UnknownEvent(ValueError):
    """An event type no webhook can hear."""


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def add_webhook(*, site: Site, url: str, events: list[str] | None = None) -> WebhookEndpoint:
    """A new enabled endpoint of `site` hearing `events` (every type when none)."""
    unknown = set(events or ()) - set(EVENT_TYPES)
    if unknown:
        raise UnknownEvent(f"no such events: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            site=site, url=url, events=sorted(set(events or ())), secret=new_secret()
        )
        sync_interest(site.pk)
    return endpoint


def rotate_secret(endpoint: WebhookEndpoint) -> str:
    """A new secret for `endpoint`; the old one keeps signing for ROTATION_OVERLAP."""
    secret = new_secret()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret=endpoint.secret,
        previous_secret_until=timezone.now() + ROTATION_OVERLAP,
        secret=secret,
    )
    endpoint.refresh_from_db()
    return secret


def sync_interest(site_id: int) -> None:
    """Tell the core which of the site's events to keep: those its enabled endpoints
    hear. Call after any change to a site's endpoints (in the same transaction)."""
    wanted: set[str] = set()
    for events in WebhookEndpoint.objects.filter(site_id=site_id, enabled=True).values_list(
        "events", flat=True
    ):
        wanted |= set(events) if events else set(EVENT_TYPES)
    durable.set_interest(site_id, wanted)
