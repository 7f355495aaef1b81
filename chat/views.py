"""HTTP endpoints of the chat core: visitor sessions for the widget, and health."""

import json
import logging

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from . import origins, selectors, services
from .models import Site

logger = logging.getLogger(__name__)

MAX_SESSION_BODY = 4096


def error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status)


# Cross-origin by design and cookie-less: the visitor is identified by the token in
# the body, so there is no ambient credential for CSRF to abuse.
@csrf_exempt
@require_POST
def visitor_sessions(request: HttpRequest) -> JsonResponse:
    if len(request.body) > MAX_SESSION_BODY:
        return error(413, "too_long", "Request body is too large.")
    try:
        payload = json.loads(request.body or b"null")
    except ValueError:
        return error(400, "bad_request", "Body must be JSON.")
    if not isinstance(payload, dict):
        return error(400, "bad_request", "Body must be a JSON object.")
    site_key = payload.get("site_key")
    token = payload.get("visitor_token")
    if not isinstance(site_key, str) or not 1 <= len(site_key) <= 64:
        return error(400, "bad_request", "site_key must be a site key.")
    if token is not None and (not isinstance(token, str) or len(token) > 128):
        return error(400, "bad_request", "visitor_token must be a string.")
    site = Site.objects.filter(key=site_key, enabled=True).first()
    if site is None:
        return error(404, "not_found", "No such site, or it is disabled.")
    origin = request.headers.get("Origin")
    if not origins.visitor_origin_allowed(origin, request.get_host(), site.allowed_origins):
        logger.warning("visitor session refused for origin %r on site %s", origin, site.id)
        return error(403, "forbidden", "This origin may not use this site's widget.")
    try:
        _visitor, token = services.create_visitor_session(site_key=site_key, visitor_token=token)
    except (selectors.NotFound, selectors.SiteDisabled):
        return error(404, "not_found", "No such site, or it is disabled.")
    return JsonResponse({"visitor_token": token, "ws_url": "/ws/visitor/"}, status=201)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """For the proxy: 200 when the database (and Redis, when configured) answer, else 503."""
    checks = {"database": _check_database()}
    if settings.REDIS_URL:
        checks["redis"] = _check_redis(settings.REDIS_URL)
    healthy = all(result == "ok" for result in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503
    )


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        logger.error("healthz: database unavailable: %s", exc)
        return "unavailable"
    return "ok"


def _check_redis(url: str) -> str:
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        logger.error("healthz: redis unavailable: %s", exc)
        return "unavailable"
    finally:
        client.close()
    return "ok"
