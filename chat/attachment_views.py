"""HTTP for attachments: uploading a file into a conversation, and downloading it (or its
thumbnail) as one of the conversation's participants.

Who is asking: a visitor by its token in `Authorization: Bearer TOKEN` (the widget
frame sends it with `fetch`, so no URL ever grants access by itself), an agent or admin
by the session cookie. Anyone else, or a participant of another conversation, gets 404:
the same answer whether the attachment exists or not.
"""

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from agents.models import AgentProfile

from . import attachments, origins, ratelimits, selectors
from .errors import NotFound
from .models import Attachment, AuditLogEntry, Conversation, SenderKind, Visitor, hash_token
from .views import error, outage_answers_503, rate_limited

logger = logging.getLogger(__name__)

# Room for the multipart envelope around the file (boundaries, headers, a conversation
# id): a body longer than the file limit plus this is refused before it is parsed.
MULTIPART_OVERHEAD = 16 * 1024
# Whatever a browser makes of a file, nothing in it may run, load or be framed here.
ATTACHMENT_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"


def _bearer_token(request: HttpRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not 1 <= len(token.strip()) <= 128:
        return None
    return token.strip()


def _visitor_for(token: str) -> Visitor | None:
    """The visitor a token was issued to (tokens are unique across sites)."""
    holder = (
        Visitor.objects.filter(token_hash=hash_token(token))
        .select_related("site", "merged_into__site")
        .first()
    )
    # Another device of a verified user: the token stands for the user's record.
    return holder and (holder.merged_into or holder)


def _agent_for(request: HttpRequest) -> AgentProfile | None:
    user = request.user
    if not (user.is_authenticated and user.is_active):
        return None
    return AgentProfile.objects.filter(user=user).first()


def _body_too_big(request: HttpRequest, max_bytes: int) -> bool:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    return length > max_bytes + MULTIPART_OVERHEAD


def _refused(refusal: attachments.Refused) -> JsonResponse:
    body = {"error": refusal.code, "detail": refusal.detail}
    if refusal.status == 413:
        # The widget and the dashboard say what the limit is.
        body["max_bytes"] = settings.SUPPORTDESK_ATTACHMENT_MAX_BYTES
    return JsonResponse(body, status=refusal.status)


def _the_file(request: HttpRequest):
    """The one uploaded file of the form field `file`; raises `attachments.Refused`."""
    try:
        files = request.FILES.getlist("file")
    except (MultiPartParserError, TooManyFilesSent, RequestDataTooBig) as exc:
        raise attachments.Refused(
            400, "bad_request", _("Not a valid upload: %(reason)s") % {"reason": exc}
        ) from None
    if len(files) != 1:
        raise attachments.Refused(
            400, "bad_request", _('Send exactly one file, as multipart form field "file".')
        )
    return files[0]


def _stored(
    request: HttpRequest, *, conversation: Conversation, uploaded_by: str, agent_id: int | None
) -> JsonResponse:
    max_bytes = settings.SUPPORTDESK_ATTACHMENT_MAX_BYTES
    try:
        attachment = attachments.store(
            conversation=conversation,
            uploaded_by=uploaded_by,
            agent_id=agent_id,
            upload=_the_file(request),
            max_bytes=max_bytes,
        )
    except attachments.Refused as refusal:
        logger.info("upload refused: %s %s", refusal.code, refusal.detail)
        return _refused(refusal)
    return JsonResponse(selectors.attachment_dict(attachment), status=201)


# Visitors are identified by the token in a header, never a cookie: no ambient
# credential for CSRF to abuse. The agents' branch, which is cookie-authenticated,
# is CSRF-checked on its own (`_agent_upload`).
@csrf_exempt
@require_POST
@outage_answers_503
def upload(request: HttpRequest) -> JsonResponse:
    """`POST /api/v1/attachments`: one file into the caller's conversation, pending until
    a `message.send` names it. 201 with the attachment; 4xx JSON with a code otherwise."""
    max_bytes = settings.SUPPORTDESK_ATTACHMENT_MAX_BYTES
    if _body_too_big(request, max_bytes):
        # Before parsing anything: the declared length alone says it cannot fit.
        return _refused(
            attachments.Refused(
                413,
                "too_large",
                _("The file is over %(limit)s.") % {"limit": attachments.describe_limit(max_bytes)},
            )
        )
    token = _bearer_token(request)
    if token is not None:
        return _visitor_upload(request, token)
    return _agent_upload(request)


def _visitor_upload(request: HttpRequest, token: str) -> JsonResponse:
    visitor = _visitor_for(token)
    if visitor is None:
        response = error(401, "unauthorized", _("Unknown visitor token."))
        response["WWW-Authenticate"] = "Bearer"
        return response
    site = visitor.site
    if not site.enabled:
        return error(404, "not_found", _("No such site, or it is disabled."))
    origin = request.headers.get("Origin")
    if not origins.visitor_origin_allowed(origin, request.get_host(), site.allowed_origins):
        logger.warning("upload refused for origin %r on site %s", origin, site.id)
        return error(403, "forbidden", _("This origin may not use this site's widget."))
    client = ratelimits.client_address(request.META.get("REMOTE_ADDR"))
    try:
        ratelimits.count(
            (ratelimits.IP_UPLOADS, client), (ratelimits.VISITOR_UPLOADS, str(visitor.id))
        )
    except ratelimits.RateLimited as exc:
        return rate_limited(_("Too many uploads; try again shortly."), exc.retry_after)
    conversation = selectors.open_conversation(visitor.id)
    if conversation is None:
        return error(409, "no_conversation", _("Files go into an open chat: send a message first."))
    return _stored(
        request, conversation=conversation, uploaded_by=SenderKind.VISITOR, agent_id=None
    )


@csrf_protect
def _agent_upload(request: HttpRequest) -> JsonResponse:
    agent = _agent_for(request)
    if agent is None:
        return error(403, "forbidden", _("Sign in as an agent, or send a visitor token."))
    try:
        ratelimits.count((ratelimits.AGENT_UPLOADS, str(agent.id)))
    except ratelimits.RateLimited as exc:
        return rate_limited(_("Too many uploads; try again shortly."), exc.retry_after)
    try:
        # Parsing the form also spools the file (to FILE_UPLOAD_TEMP_DIR past 2.5 MB).
        conversation_id = int(request.POST.get("conversation", ""))
    except (MultiPartParserError, TooManyFilesSent, RequestDataTooBig):
        return error(400, "bad_request", _("Not a valid multipart upload."))
    except ValueError:
        return error(400, "bad_request", _("conversation must be a conversation id."))
    try:
        conversation = selectors.conversation_for_agent(agent.id, conversation_id)
    except NotFound:
        return error(404, "not_found", _("No such conversation."))
    if not conversation.is_open:
        return error(409, "conversation_closed", _("The conversation is closed."))
    return _stored(
        request, conversation=conversation, uploaded_by=SenderKind.AGENT, agent_id=agent.id
    )


# --- downloads --------------------------------------------------------------------


def _attachment_for(request: HttpRequest, attachment_id: int) -> Attachment:
    """The attachment if the caller is allowed it, else `NotFound`."""
    token = _bearer_token(request)
    if token is not None:
        visitor = _visitor_for(token)
        if visitor is None or not visitor.site.enabled:
            raise NotFound
        return selectors.attachment_for_visitor(visitor.id, attachment_id)
    agent = _agent_for(request)
    if agent is not None:
        try:
            return selectors.attachment_for_agent(agent.id, attachment_id)
        except NotFound:
            pass  # an agent may also be an admin reading transcripts
    user = request.user
    # Admins who may read transcripts may open what was sent in them (not pending ones).
    if user.is_active and user.is_staff and user.has_perm("chat.view_conversation"):
        attachment = Attachment.objects.filter(pk=attachment_id, message__isnull=False).first()
        if attachment is not None:
            # As for transcripts: an admin's reading is on the record.
            AuditLogEntry.record(
                action=AuditLogEntry.Action.VIEWED,
                object_type="attachment",
                object_id=attachment.pk,
                actor=user,
                details={"conversation": attachment.conversation_id},
            )
            return attachment
    raise NotFound


def _not_found() -> HttpResponse:
    response = error(404, "not_found", _("No such attachment."))
    patch_vary_headers(response, ["Authorization", "Cookie"])
    return response


@require_GET
@outage_answers_503
def download(request: HttpRequest, attachment_id: int) -> HttpResponse:
    """`GET /attachments/ID/`: the file itself, always as a download."""
    try:
        attachment = _attachment_for(request, attachment_id)
    except NotFound:
        return _not_found()
    return _file_response(attachment, thumbnail=False)


@require_GET
@outage_answers_503
def thumbnail(request: HttpRequest, attachment_id: int) -> HttpResponse:
    """`GET /attachments/ID/thumbnail/`: an image's preview (made by us), inline."""
    try:
        attachment = _attachment_for(request, attachment_id)
    except NotFound:
        return _not_found()
    if not attachment.thumbnail:
        return _not_found()
    return _file_response(attachment, thumbnail=True)


def _file_response(attachment: Attachment, *, thumbnail: bool) -> HttpResponse:
    field = attachment.thumbnail if thumbnail else attachment.file
    try:
        handle = field.open("rb")
    except FileNotFoundError:
        logger.error("attachment %s: file %s missing from storage", attachment.pk, field.name)
        return _not_found()
    if thumbnail:
        # Our own re-encoded JPEG: safe to show in an <img>.
        response = FileResponse(
            handle,
            as_attachment=False,
            filename=f"{attachment.name}.thumbnail.jpg",
            content_type=attachments.THUMBNAIL_CONTENT_TYPE,
        )
        response["Cache-Control"] = "private, max-age=600"
    else:
        content_type = attachment.content_type
        if content_type == "text/plain":
            content_type += "; charset=utf-8"
        # Always a download, never rendered in our origin: a file that is also valid
        # HTML or script (a polyglot) cannot run here.
        response = FileResponse(
            handle, as_attachment=True, filename=attachment.name, content_type=content_type
        )
        response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = ATTACHMENT_CSP
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    response["Referrer-Policy"] = "no-referrer"
    patch_vary_headers(response, ["Authorization", "Cookie"])
    return response
