"""Sending webhook deliveries, inside every worker: no process of its own to start.

A worker claims due deliveries (SKIP LOCKED, a lease while it sends), POSTs each body
signed per Standard Webhooks, and records what happened. A conversation's first
attempts go out in the order its events committed: a delivery waits while an earlier
one of the same conversation and endpoint has not had its first attempt. A failure is
retried with backoff (the first retry within 10 s) for at least 24 hours; an endpoint
that failed everything for 24 hours is switched off and the site's admins are told.
A worker killed mid-send leaves its claims to expire: another worker sends them again,
under the same `webhook-id` (receivers drop repeats by it).
"""

import asyncio
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import mail_admins
from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from chat.transport.background import start_once

from . import outbox
from .models import WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)
Status = WebhookDelivery.Status

TIMEOUT = 10.0  # seconds a receiver has to answer
# A claim outlives a turn (its sends side by side, each within TIMEOUT, then their
# records); a worker killed mid-turn leaves its claims to be taken again after it.
LEASE = timedelta(seconds=3 * TIMEOUT)
GIVE_UP_AFTER = timedelta(hours=24)
# Seconds after the n-th failed attempt before the next (the last repeats).
BACKOFF = (5, 30, 120, 600, 1800, 3600, 7200, 14400)
USER_AGENT = "supportdesk-webhooks/1"


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=BACKOFF[min(attempts, len(BACKOFF)) - 1])


def claim(*, limit: int = 20, now: datetime | None = None) -> list[WebhookDelivery]:
    """Lease up to `limit` due deliveries to this worker (a pending one whose time has
    come, or one whose last claim expired), earliest event first, skipping any whose
    conversation still has an earlier event waiting for its first attempt at that
    endpoint."""
    now = now or timezone.now()
    table = WebhookDelivery._meta.db_table
    skip_locked = connection.features.has_select_for_update_skip_locked
    lock = " FOR UPDATE OF d SKIP LOCKED" if skip_locked else ""
    adapt = connection.ops.adapt_datetimefield_value
    with transaction.atomic():
        rows = list(
            WebhookDelivery.objects.raw(
                f"SELECT d.* FROM {table} d JOIN integrations_webhookendpoint e"
                " ON e.id = d.endpoint_id"
                " WHERE e.enabled AND ((d.status = %s AND d.next_attempt_at <= %s)"
                "  OR (d.status = %s AND d.lease_until < %s))"
                f" AND NOT EXISTS (SELECT 1 FROM {table} p WHERE p.endpoint_id = d.endpoint_id"
                "  AND p.conversation_id = d.conversation_id AND p.event_id < d.event_id"
                "  AND p.attempts = 0 AND p.status IN (%s, %s))"
                f" ORDER BY d.event_id LIMIT %s{lock}",
                [
                    Status.PENDING,
                    adapt(now),
                    Status.SENDING,
                    adapt(now),
                    Status.PENDING,
                    Status.SENDING,
                    limit,
                ],
            )
        )
        if rows:
            WebhookDelivery.objects.filter(pk__in=[r.pk for r in rows]).update(
                status=Status.SENDING, lease_until=now + LEASE
            )
    return rows


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def signed_request(delivery: WebhookDelivery, *, now: datetime) -> urllib.request.Request:
    """The POST of one attempt: the body as made, `webhook-id` the same every time,
    `webhook-timestamp` this attempt's, signed with the secret (and, for a day after a
    rotation, with the previous one too)."""
    endpoint = delivery.endpoint
    secrets = [endpoint.secret]
    if endpoint.previous_secret and (endpoint.previous_secret_until or now) > now:
        secrets.append(endpoint.previous_secret)
    signature = " ".join(
        Webhook(secret).sign(delivery.webhook_id, now, delivery.body) for secret in secrets
    )
    return urllib.request.Request(
        endpoint.url,
        data=delivery.body.encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        },
    )


def post(request: urllib.request.Request) -> Outcome:
    """Send one attempt (blocking: run it off the event loop)."""
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return Outcome(response.status, "")
    except urllib.error.HTTPError as exc:
        return Outcome(exc.code, f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Outcome(None, str(getattr(exc, "reason", exc))[:500])


def record(delivery: WebhookDelivery, outcome: Outcome, *, now: datetime | None = None) -> None:
    """What one attempt did: delivered, or when to try again (or given up)."""
    now = now or timezone.now()
    first = delivery.first_attempt_at or now
    changes = {
        "attempts": delivery.attempts + 1,
        "first_attempt_at": first,
        "last_attempt_at": now,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
        "lease_until": None,
    }
    if outcome.delivered:
        changes.update(status=Status.DELIVERED, delivered_at=now)
    elif now - first >= GIVE_UP_AFTER:
        changes.update(status=Status.FAILED)
    else:
        changes.update(status=Status.PENDING, next_attempt_at=now + backoff(delivery.attempts + 1))
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(**changes)
        _endpoint_health(delivery.endpoint_id, delivered=outcome.delivered, now=now)


def _endpoint_health(endpoint_id: int, *, delivered: bool, now: datetime) -> None:
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
    if delivered:
        if endpoint.failing_since is not None:
            WebhookEndpoint.objects.filter(pk=endpoint_id).update(failing_since=None)
        return
    if endpoint.failing_since is None:
        WebhookEndpoint.objects.filter(pk=endpoint_id).update(failing_since=now)
    elif endpoint.enabled and now - endpoint.failing_since >= GIVE_UP_AFTER:
        reason = f"Every delivery failed since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC."
        WebhookEndpoint.objects.filter(pk=endpoint_id).update(enabled=False, disabled_reason=reason)
        from .endpoints import sync_interest

        sync_interest(endpoint.site_id)
        transaction.on_commit(lambda: _tell_admins(endpoint, reason))
        logger.warning("webhook endpoint %s switched off: %s", endpoint.url, reason)


def _tell_admins(endpoint: WebhookEndpoint, reason: str) -> None:
    try:
        mail_admins(
            f"Webhook endpoint switched off: {endpoint.url}",
            f"The webhook endpoint {endpoint.url} of site {endpoint.site_id} was switched"
            f" off. {reason}\nTurn it on again in the admin (Integrations → Webhook"
            " endpoints) once the receiver answers.",
        )
    except Exception:
        logger.exception("could not mail the admins about endpoint %s", endpoint.url)


def send_again(delivery_ids: list[int]) -> int:
    """An admin's "send again": these deliveries go out at the next turn, whatever they
    did before (a delivered one is sent once more, under the same `webhook-id`)."""
    return WebhookDelivery.objects.filter(pk__in=delivery_ids).update(
        status=Status.PENDING, next_attempt_at=timezone.now(), lease_until=None
    )


# --- the loop in each worker ------------------------------------------------------


def ensure_running() -> None:
    """Start this event loop's webhook sender once (a worker starting)."""
    interval = settings.SUPPORTDESK_WEBHOOK_INTERVAL
    if interval <= 0:
        return
    start_once("webhook-delivery", lambda: _run(interval))


async def _run(interval: float) -> None:
    while True:
        sent = 0
        try:
            sent = await run_once()
        except asyncio.CancelledError:
            raise
        except Exception:
            # The database is down: try again next time.
            logger.exception("webhook delivery failed")
        if not sent:  # after a turn that sent something, the next is due at once
            await asyncio.sleep(interval)


async def run_once(*, limit: int = 20) -> int:
    """One turn: make deliveries of the kept events, then send what is due (at most
    `limit`, side by side). Returns how many were sent."""
    from chat.transport.orm import on_database_thread

    await on_database_thread(outbox.dispatch)()
    due = await on_database_thread(_claim_with_endpoints)(limit)
    if not due:
        return 0
    now = timezone.now()
    outcomes = await asyncio.gather(
        *(asyncio.to_thread(post, signed_request(d, now=now)) for d in _ordered(due))
    )
    for delivery, outcome in zip(_ordered(due), outcomes, strict=True):
        await on_database_thread(record)(delivery, outcome)
    return len(due)


def _claim_with_endpoints(limit: int) -> list[WebhookDelivery]:
    due = claim(limit=limit)
    endpoints = WebhookEndpoint.objects.in_bulk({d.endpoint_id for d in due})
    for delivery in due:
        delivery.endpoint = endpoints[delivery.endpoint_id]
    return due


def _ordered(due: list[WebhookDelivery]) -> list[WebhookDelivery]:
    return sorted(due, key=lambda d: d.event_id)
