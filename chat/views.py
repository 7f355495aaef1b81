"""HTTP endpoints of the chat core: the landing page and the docs, visitor sessions for the
widget, and health."""

import concurrent.futures
import functools
import json
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views import csrf as django_csrf
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from . import health, languages, offline, origins, protocol, ratelimits, redis_urls
from .conversations import identity, sessions
from .errors import NotFound, SiteDisabled
from .models import Site

logger = logging.getLogger(__name__)

# The documentation `GET /` links to, served as the Markdown it is written in.
DOCS = {
    "readme": ("README.md", "Getting started (README)"),
    "architecture": ("docs/architecture.md", "Architecture: where each rule lives"),
    "protocol": ("docs/protocol.md", "Protocol: HTTP and WebSocket frames"),
    "deploy": ("docs/deploy.md", "Deploying on several workers"),
    "security": ("docs/security.md", "Security"),
    "admin": ("docs/admin.md", "Transcripts, analytics, retention"),
    "performance": ("docs/performance.md", "Performance"),
}

MAX_SESSION_BODY = 4096
# Name, email and a question of up to 10,000 characters (4 bytes each at worst).
MAX_OFFLINE_BODY = 48 * 1024


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """`GET /`: what runs here and where to go (never Django's 404)."""
    return render(
        request,
        "home.html",
        {
            "docs": [(slug, title) for slug, (_path, title) in DOCS.items()],
            "demo_shop_url": settings.SUPPORTDESK_DEMO_SHOP_URL,
            "widget_url": request.build_absolute_uri(reverse("widget-js")),
        },
    )


@require_GET
def docs(request: HttpRequest, slug: str) -> FileResponse:
    """One of the documents `home` lists, as plain text (its Markdown source)."""
    if slug not in DOCS:
        raise Http404("No such document.")
    path = settings.BASE_DIR / DOCS[slug][0]
    if not path.is_file():  # a deployment without the repository's docs
        raise Http404("This server has no copy of that document.")
    response = FileResponse(path.open("rb"), content_type="text/plain; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    return response


def error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status)


def rate_limited(detail: str, retry_after: int) -> JsonResponse:
    response = error(429, "rate_limited", detail)
    response["Retry-After"] = str(retry_after)
    return response


class Refused(Exception):
    """A widget request answered with `response` before reaching a service."""

    def __init__(self, response: JsonResponse):
        super().__init__(response.status_code)
        self.response = response


def _visitor_payload(request: HttpRequest, *, max_body: int) -> tuple[dict, str, str | None]:
    """The JSON object of a widget request, with its checked site_key and visitor_token."""
    try:
        too_long = len(request.body) > max_body
    except RequestDataTooBig:  # past DATA_UPLOAD_MAX_MEMORY_SIZE: never read at all
        too_long = True
    if too_long:
        raise Refused(error(413, "too_long", _("Request body is too large.")))
    try:
        payload = json.loads(request.body or b"null")
    except (ValueError, RecursionError):
        raise Refused(error(400, "bad_request", _("Body must be JSON."))) from None
    if not isinstance(payload, dict):
        raise Refused(error(400, "bad_request", _("Body must be a JSON object.")))
    site_key = payload.get("site_key")
    token = payload.get("visitor_token")
    if not isinstance(site_key, str) or not 1 <= len(site_key) <= 64:
        raise Refused(error(400, "bad_request", _("site_key must be a site key.")))
    if token is not None and (not isinstance(token, str) or len(token) > 128):
        raise Refused(error(400, "bad_request", _("visitor_token must be a string.")))
    for name, value in (("site_key", site_key), ("visitor_token", token)):
        if not protocol.storable(value):
            raise Refused(error(400, "bad_request", protocol.UNSTORABLE_TEXT % {"field": name}))
    return payload, site_key, token


def _widget_site(request: HttpRequest, site_key: str, *, what: str) -> Site:
    """The enabled site of a widget request whose Origin that site accepts."""
    site = Site.objects.filter(key=site_key, enabled=True).first()
    if site is None:
        raise Refused(error(404, "not_found", _("No such site, or it is disabled.")))
    origin = request.headers.get("Origin")
    if not origins.visitor_origin_allowed(origin, request.get_host(), site.allowed_origins):
        logger.warning("%s refused for origin %r on site %s", what, origin, site.id)
        raise Refused(error(403, "forbidden", _("This origin may not use this site's widget.")))
    return site


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A refused CSRF check (settings.CSRF_FAILURE_VIEW): JSON under /api/, where the
    caller is a program, and Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return error(403, "forbidden", f"CSRF check failed: {reason}")
    return django_csrf.csrf_failure(request, reason=reason)


def outage_answers_503(view):
    """While the database is down the API answers 503 JSON at once (retry later),
    not Django's HTML error page."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            logger.error("%s: database unavailable: %s", request.path, exc)
            return error(503, "unavailable", _("The service is unavailable; retry shortly."))

    return wrapper


# Cross-origin by design and cookie-less: the visitor is identified by the token in
# the body, so there is no ambient credential for CSRF to abuse.
@csrf_exempt
@require_POST
@outage_answers_503
def visitor_sessions(request: HttpRequest) -> JsonResponse:
    try:
        payload, site_key, token = _visitor_payload(request, max_body=MAX_SESSION_BODY)
    except Refused as refusal:
        return refusal.response
    rotate = payload.get("rotate", False)
    if not isinstance(rotate, bool):
        return error(400, "bad_request", _("rotate must be true or false."))
    try:
        claimed = _claimed_identity(payload.get("identity"))
    except ValueError as exc:
        return error(400, "bad_request", str(exc))
    try:
        _widget_site(request, site_key, what="visitor session")
    except Refused as refusal:
        return refusal.response
    # Behind a proxy this is the X-Forwarded-For address only if daphne runs with
    # --proxy-headers (docs/security.md); the header itself is never read here.
    language = payload.get("language")
    if language is not None and languages.supported(language) != language:
        return error(400, "bad_request", _("language must be one of the shipped language codes."))
    client = ratelimits.client_address(request.META.get("REMOTE_ADDR"))
    try:
        visitor, token = sessions.create_visitor_session(
            site_key=site_key,
            visitor_token=token,
            rotate=rotate,
            language=language or "",
            before_issuing=lambda: ratelimits.new_session(client),
        )
    except (NotFound, SiteDisabled):
        return error(404, "not_found", _("No such site, or it is disabled."))
    except ratelimits.RateLimited as exc:
        return rate_limited(_("Too many new visitors from this address."), exc.retry_after)
    answer = {"visitor_token": token, "ws_url": "/ws/visitor/"}
    if claimed is not None:
        _record, verified = identity.identify(visitor, claimed)
        answer["identity"] = "verified" if verified else "unverified"
    return JsonResponse(answer, status=201)


IDENTITY_FIELDS = {"user_id": 200, "user_hash": 128, "name": 200, "email": 254}


def _claimed_identity(value) -> identity.Identity | None:
    """The `identity` of a visitor session request (identity verification), checked
    for shape; whether it holds is the service's business."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("identity must be an object.")
    fields = {}
    for name, limit in IDENTITY_FIELDS.items():
        given = value.get(name)
        if given is None:
            continue
        if not isinstance(given, str) or len(given) > limit or not protocol.storable(given):
            raise ValueError(f"identity.{name} must be a string of at most {limit} characters.")
        fields[name] = given
    return identity.Identity(
        user_id=fields.get("user_id", ""),
        user_hash=fields.get("user_hash", ""),
        name=fields.get("name", ""),
        email=fields.get("email", ""),
    )


@csrf_exempt
@require_POST
@outage_answers_503
def offline_messages(request: HttpRequest) -> JsonResponse:
    """The widget's offline form (name, email, question): a queued conversation agents
    see, and an email to the site's agents. Same Origin rules as visitor sessions."""
    try:
        payload, site_key, token = _visitor_payload(request, max_body=MAX_OFFLINE_BODY)
    except Refused as refusal:
        return refusal.response
    try:
        name, email, question = offline.clean(payload)
    except offline.Invalid as exc:
        return error(400, "bad_request", str(exc))
    try:
        site = _widget_site(request, site_key, what="offline message")
    except Refused as refusal:
        return refusal.response
    client = ratelimits.client_address(request.META.get("REMOTE_ADDR"))
    try:
        ratelimits.count((ratelimits.IP_MESSAGES, client))
        visitor, token, posted = sessions.leave_offline_message(
            site_key=site_key,
            visitor_token=token,
            name=name,
            email=email,
            question=question,
            before_issuing=lambda: ratelimits.new_session(client),
            before_opening=lambda: ratelimits.count((ratelimits.IP_CONVERSATIONS, client)),
        )
    except (NotFound, SiteDisabled):
        return error(404, "not_found", _("No such site, or it is disabled."))
    except ratelimits.RateLimited as exc:
        return rate_limited(_("Too many messages from this address."), exc.retry_after)
    conversation_id = posted.message["conversation"]
    if posted.created:
        offline.email_agents(
            site=site, visitor=visitor, conversation_id=conversation_id, question=question
        )
    return JsonResponse(
        {"visitor_token": token, "conversation": conversation_id, "seq": posted.message["seq"]},
        status=201,
    )


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """For the proxy: 200 when the database (and every Redis this worker uses, when
    configured) answer, else 503. Also says which Redis this worker reaches and in what
    role: the primary (`redis_primary`: cache and rate limits; through Sentinel, the
    master it names now) and each channel-layer shard (`redis_channel_shards`)."""
    checks = {"database": _check_database()}
    report = {}
    if settings.REDIS_URL:
        primary, shards = _redis_targets()
        seen = _probe_redis(redis_urls.distinct([primary, *shards]))
        report = {
            "redis_primary": seen[primary],
            "redis_channel_shards": [
                {"shard": number, **seen[shard]} for number, shard in enumerate(shards)
            ],
        }
        healthy_redis = all(answer["status"] == "ok" for answer in seen.values())
        checks["redis"] = "ok" if healthy_redis else "unavailable"
    healthy = all(result == "ok" for result in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", **checks, **report, **health.reports()},
        status=200 if healthy else 503,
    )


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        logger.error("healthz: database unavailable: %s", exc)
        return "unavailable"
    return "ok"


def _redis_targets() -> tuple[redis_urls.RedisTarget, list[redis_urls.RedisTarget]]:
    """The primary and the channel layer's shards, as settings name them now."""
    primary = redis_urls.parse(settings.REDIS_URL)
    shards = [redis_urls.parse(url) for url in redis_urls.split_urls(settings.REDIS_CHANNEL_URLS)]
    return primary, shards or [primary]


def _probe_redis(targets: list[redis_urls.RedisTarget]) -> dict[redis_urls.RedisTarget, dict]:
    """Each target probed at once, side by side: a reply within about a second even when
    several servers do not answer."""
    if len(targets) == 1:
        seen = {targets[0]: redis_urls.probe(targets[0])}
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(targets)) as pool:
            seen = dict(zip(targets, pool.map(redis_urls.probe, targets), strict=True))
    for target, answer in seen.items():
        if answer["status"] != "ok":
            logger.error("healthz: redis %s unavailable: %s", target, answer)
    return seen
