"""API keys: made (shown once), checked on every request, revoked."""

import hashlib
import secrets

from django.utils import timezone

from chat.models import Site

from .models import ApiKey

PREFIX = "sdk_"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(*, site: Site, name: str = "") -> tuple[ApiKey, str]:
    """A new key for `site`: the row, and the key itself, which is not kept anywhere."""
    key = PREFIX + secrets.token_urlsafe(32)
    row = ApiKey.objects.create(site=site, name=name, prefix=key[:12], key_hash=_hash(key))
    return row, key


def authenticate(key: str) -> ApiKey | None:
    """The live key behind `key`, its use recorded; None for an unknown or revoked one.

    The use is written at most once a minute per key: a busy integration must not turn
    every request into a write."""
    row = (
        ApiKey.objects.select_related("site")
        .filter(key_hash=_hash(key), revoked_at__isnull=True, site__enabled=True)
        .first()
    )
    if row is None:
        return None
    now = timezone.now()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=row.pk).update(last_used_at=now)
        row.last_used_at = now
    return row


def revoke(key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
