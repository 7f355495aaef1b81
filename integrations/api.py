"""The REST API of one site, for other systems (a CRM, a helpdesk, Slack): conversations,
their messages, visitors, agents and the site, behind a site's API key.

Built with django-ninja: the schemas below are the code and the OpenAPI document
(`/api/v1/openapi.json`) at once. Every change goes through the chat core's services,
exactly as from the sockets: a message posted here is stored, acknowledged and delivered
live like one from the dashboard.
"""

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.http import HttpRequest, HttpResponse
from ninja import Field, NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import HttpBearer
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    WithJsonSchema,
    model_validator,
)

from chat import errors, protocol, ratelimits, selectors
from chat.conversations import closing, routing, sending, sessions
from chat.conversations.actors import Actor
from chat.models import Conversation, Message, Visitor

from . import keys, widget_paths
from .models import ApiKey
from .shapes import conversation_record, site_agents, visitor_record

API_KEYS = ratelimits.Rule("api-key", "SUPPORTDESK_LIMIT_API_KEY")
MAX_PAGE = 100


class SiteKey(HttpBearer):
    """`Authorization: Bearer API_KEY`: the key's site is the only one the request sees."""

    def __call__(self, request: HttpRequest):
        # HttpBearer's own logs the header it refuses under DEBUG: a key never goes to a
        # log, so the header is read here.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        key = keys.authenticate(token)
        if key is not None:
            # Per key, in every worker: a runaway integration is slowed, not the desk.
            ratelimits.count((API_KEYS, str(key.pk)))
        return key


class SupportdeskApi(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        """Ninja's document of the keyed API, and the widget's endpoints beside it."""
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        prefix = path_prefix if path_prefix is not None else self.get_root_path(path_params or {})
        schema["paths"].update(widget_paths.paths(prefix))
        return schema


api = SupportdeskApi(
    title="supportdesk API",
    version="1",
    description="A site's conversations, messages, visitors and agents (docs/api.md).",
    auth=SiteKey(),
    docs_url=None,  # the human page is ours: integrations/views.py, no CDN
    urls_namespace="api",
)


class Error(Schema):
    error: str = Field(description="A code: unauthorized, not_found, bad_request, ...")
    detail: str


def _error(request, status: int, code: str, detail: str, **headers) -> HttpResponse:
    response = api.create_response(request, {"error": code, "detail": detail}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


@api.exception_handler(AuthenticationError)
def _unauthorized(request, exc):
    return _error(request, 401, "unauthorized", "A valid API key is needed (Bearer).")


@api.exception_handler(ratelimits.RateLimited)
def _rate_limited(request, exc):
    return _error(
        request,
        429,
        "rate_limited",
        "Too many requests for this key.",
        Retry_After=str(exc.retry_after),
    )


@api.exception_handler(NinjaValidationError)
def _bad_request(request, exc):
    problems = "; ".join(
        f"{'.'.join(str(part) for part in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
        for e in exc.errors
    )
    return _error(request, 400, "bad_request", problems or "The request is not valid.")


@api.exception_handler(errors.NotFound)
def _not_found(request, exc):
    return _error(request, 404, "not_found", "No such object at this site.")


@api.exception_handler(HttpError)
def _http_error(request, exc):
    code = {400: "bad_request", 404: "not_found", 409: "conflict"}.get(exc.status_code, "error")
    return _error(request, exc.status_code, code, str(exc))


class Conflict(HttpError):
    def __init__(self, code: str, detail: str):
        super().__init__(409, detail)
        self.code = code


@api.exception_handler(Conflict)
def _conflict(request, exc):
    return _error(request, 409, exc.code, str(exc))


# --- schemas ------------------------------------------------------------------------


class Person(Schema):
    id: int
    name: str | None
    email: str | None
    verified: bool = Field(description="The site's server vouched for who this is.")


class AgentRef(Schema):
    id: int
    display_name: str


class EmailDetails(Schema):
    subject: str
    sender: str = Field(description="The latest mail's From header.")
    sender_verified: bool = Field(
        description="The upstream mail server's SPF or DKIM check passed for that sender."
    )


class ConversationOut(Schema):
    id: int
    site: int
    status: Literal["queued", "active", "closed", "bot"]
    channel: Literal["chat", "email"]
    email: EmailDetails | None = Field(description="An email conversation's subject and sender.")
    visitor: Person
    agent: AgentRef | None
    created_at: datetime
    assigned_at: datetime | None
    closed_at: datetime | None
    closed_by: Literal["visitor", "agent", "system"] | None
    last_seq: int
    last_activity_at: datetime


class ConversationPage(Schema):
    conversations: list[ConversationOut]
    next: str | None = Field(description="Pass as `cursor` for the next page; null: the last.")


class AttachmentOut(Schema):
    id: int
    name: str
    size: int
    content_type: str
    url: str
    thumbnail_url: str | None


class ArticleRef(Schema):
    id: int
    title: str


class MessageOut(Schema):
    conversation: int
    seq: int
    sender: Literal["visitor", "agent", "system", "bot"]
    body: str
    client_msg_id: str | None
    sent_at: datetime
    agent: AgentRef | None = Field(None, description="An agent's message: its author.")
    sources: list[ArticleRef] | None = Field(
        None, description="A bot's message: the articles it answered from."
    )
    attachment: AttachmentOut | None = None


class MessagePage(Schema):
    conversation: int
    last_seq: int
    messages: list[MessageOut]


def _storable(value: str) -> str:
    if not protocol.storable(value):
        raise ValueError(protocol.UNSTORABLE_TEXT % {"field": "text"})
    return value


def _email(value: str) -> str:
    if value:
        try:
            if len(value) > 254:
                raise DjangoValidationError("too long")
            validate_email(value)
        except DjangoValidationError:
            raise ValueError("not an email address") from None
    return value


# Any text stored from a request is what PostgreSQL can store, as on the sockets: no NUL
# (the pattern, which the document shows), no unpaired surrogate (`_storable`).
NO_NUL = r"^[^\x00]*$"
# ... and a message's body is not blank (it is stored trimmed).
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"
Text = AfterValidator(_storable)
Body = Annotated[
    str, Field(min_length=1, max_length=Message.MAX_BODY_CHARS, pattern=NOT_BLANK), Text
]
ClientMsgId = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL), Text]


# A stored row's id: a 64-bit key, so a larger number names nothing (and is refused
# before it reaches the database, which would fail on it).
RowId = Annotated[int, Field(ge=1, le=2**63 - 1)]
Seq = Annotated[int, Field(ge=0, le=2**63 - 1)]


class Input(Schema):
    """A request body: a JSON object (ninja's schemas would read any value's attributes)."""

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: Any) -> Any:
        if not isinstance(getattr(data, "_obj", data), dict):  # ninja wraps it in a getter
            raise ValueError("the body must be a JSON object")
        return data


class MessageIn(Input):
    body: Body
    client_msg_id: ClientMsgId = Field(description="Retries with the same id store one message.")
    agent_id: RowId | None = Field(
        None, description="The agent it is posted as: the conversation's agent if left out."
    )


class TransferIn(Input):
    agent_id: RowId | None = Field(description="An agent of the site with room; null: the queue.")


# Strict: a string stays a string ("007" is not the number 7, and a string too long
# for the first member is refused, not read as a number by the next).
AttributeValue = (
    Annotated[str, Field(max_length=500, pattern=NO_NUL), Text]
    | StrictInt
    | StrictFloat
    | StrictBool
    | None
)


class VisitorOut(Schema):
    id: int
    site: int
    name: str | None
    email: str | None
    attributes: dict[str, AttributeValue]
    user_id: str | None = Field(description="The site's user id, once verified.")
    verified: bool
    first_seen: datetime
    last_seen: datetime


class VisitorIn(Input):
    name: Annotated[str, Field(max_length=200, pattern=NO_NUL), Text] | None = Field(
        None, description='"" clears it; left out or null: unchanged.'
    )
    email: (
        Annotated[
            str,
            AfterValidator(_email),
            WithJsonSchema(
                {"anyOf": [{"type": "string", "format": "email", "maxLength": 254}, {"const": ""}]}
            ),
        ]
        | None
    ) = Field(None, description='An email address; "" clears it; left out or null: unchanged.')
    attributes: (
        Annotated[
            dict[
                Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL), Text],
                AttributeValue,
            ],
            Field(max_length=Visitor.MAX_ATTRIBUTES),
            # pydantic would say the key's pattern as patternProperties, which leaves
            # other keys unchecked: the rule as it is.
            WithJsonSchema(
                {
                    "type": "object",
                    "maxProperties": Visitor.MAX_ATTRIBUTES,
                    "propertyNames": {"minLength": 1, "maxLength": 64, "pattern": NO_NUL},
                    "additionalProperties": {
                        "anyOf": [
                            {"type": "string", "maxLength": 500, "pattern": NO_NUL},
                            {"type": ["number", "boolean", "null"]},
                        ]
                    },
                }
            ),
        ]
        | None
    ) = Field(None, description="Merged into the visitor's; a null value removes a key.")


class AgentOut(Schema):
    id: int
    display_name: str
    status: Literal["available", "away"]
    online: bool
    load: int
    capacity: int


class SiteOut(Schema):
    id: int
    name: str
    key: str
    enabled: bool
    allowed_origins: list[str]


CONVERSATION_ERRORS = {400: Error, 401: Error, 404: Error, 429: Error}
CHANGE_ERRORS = {**CONVERSATION_ERRORS, 409: Error}


# --- conversations ----------------------------------------------------------------


def _conversation(key: ApiKey, conversation_id: int) -> Conversation:
    """The key's site's conversation, else `NotFound` (another site's is not there)."""
    conversation = (
        Conversation.objects.select_related("visitor", "agent")
        .filter(pk=conversation_id, site_id=key.site_id)
        .first()
    )
    if conversation is None:
        raise errors.NotFound
    return conversation


def _iso_8601(value: Any) -> Any:
    # pydantic would also read a number as seconds since 1970: not what the document says.
    if isinstance(value, str) and re.fullmatch(r"[-+]?[\d.eE+-]+", value):
        raise ValueError("an ISO 8601 time, e.g. 2026-12-07T10:00:00Z")
    return value


def _in_utc(value: datetime | None) -> datetime | None:
    # PostgreSQL takes offsets up to 15:59 only; ISO 8601 allows up to 23:59.
    try:
        return value and value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None


@api.get("/conversations", response={200: ConversationPage, **CONVERSATION_ERRORS})
def list_conversations(
    request,
    status: Literal["queued", "active", "closed", "bot"] | None = None,
    updated_after: Annotated[
        AwareDatetime | None,
        BeforeValidator(_iso_8601),
        AfterValidator(_in_utc),
        Field(description="Changed after this ISO 8601 time, with its offset (e.g. Z)."),
    ] = None,
    cursor: Annotated[
        str | None,
        Field(pattern=r"^[0-9]{1,18}$", description="The `next` of the page before."),
    ] = None,
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 50,
):
    """The site's conversations, oldest first, a page at a time."""
    rows = Conversation.objects.select_related("visitor", "agent").filter(
        site_id=request.auth.site_id, pk__gt=int(cursor or 0)
    )
    if status is not None:
        rows = rows.filter(status=status)
    if updated_after is not None:
        rows = rows.filter(last_activity_at__gt=updated_after)
    page = list(rows.order_by("pk")[: limit + 1])
    following = None
    if len(page) > limit:
        page = page[:limit]
        following = str(page[-1].pk)  # the pages go by id: a new row never shifts them
    return {"conversations": [conversation_record(c) for c in page], "next": following}


@api.get("/conversations/{conversation_id}", response={200: ConversationOut, **CONVERSATION_ERRORS})
def get_conversation(request, conversation_id: RowId):
    return conversation_record(_conversation(request.auth, conversation_id))


@api.post(
    "/conversations/{conversation_id}/close", response={200: ConversationOut, **CHANGE_ERRORS}
)
def close_conversation(request, conversation_id: RowId):
    """Close it (both sides are told it was closed by the system)."""
    conversation = _conversation(request.auth, conversation_id)
    try:
        closing.close_conversation(Actor.system(), conversation_id=conversation.pk)
    except errors.ConversationClosed:
        raise Conflict("conversation_closed", "The conversation is closed already.") from None
    return conversation_record(_conversation(request.auth, conversation_id))


@api.post(
    "/conversations/{conversation_id}/transfer", response={200: ConversationOut, **CHANGE_ERRORS}
)
def transfer_conversation(request, conversation_id: RowId, transfer: TransferIn):
    """Hand an active conversation to another agent with room, or back to the queue."""
    conversation = _conversation(request.auth, conversation_id)
    if conversation.status != Conversation.Status.ACTIVE:
        raise Conflict("not_active", "Only an active conversation can be transferred.")
    try:
        routing.transfer_conversation(
            agent_id=conversation.agent_id,
            conversation_id=conversation.pk,
            to_agent_id=transfer.agent_id,
        )
    except errors.AgentUnavailable:
        raise Conflict("agent_unavailable", "That agent cannot take this chat now.") from None
    except (errors.NotFound, errors.ConversationClosed):
        raise Conflict("not_active", "The conversation changed meanwhile; read it again.") from None
    return conversation_record(_conversation(request.auth, conversation_id))


# --- messages ---------------------------------------------------------------------


@api.get(
    "/conversations/{conversation_id}/messages", response={200: MessagePage, **CONVERSATION_ERRORS}
)
def list_messages(request, conversation_id: RowId, after_seq: Seq = 0):
    """The conversation's messages after `after_seq`, in seq order."""
    conversation = _conversation(request.auth, conversation_id)
    return {
        "conversation": conversation.pk,
        "last_seq": conversation.last_seq,
        "messages": selectors.messages_after(conversation.pk, after_seq),
    }


@api.post(
    "/conversations/{conversation_id}/messages",
    response={201: MessageOut, 200: MessageOut, **CHANGE_ERRORS},
)
def post_message(request, conversation_id: RowId, message: MessageIn):
    """Post as an agent, exactly as from the dashboard: stored, and delivered live to the
    visitor and the agent's tabs. A retry with the same `client_msg_id` stores nothing and
    answers 200 with the first message."""
    conversation = _conversation(request.auth, conversation_id)
    agent_id = message.agent_id or conversation.agent_id
    body = message.body.strip()
    if not body:
        raise HttpError(400, "body is empty.")
    if agent_id is None:
        raise Conflict("not_assigned", "The conversation has no agent yet; name one.")
    try:
        posted = sending.post_message(
            Actor.agent(agent_id),
            conversation_id=conversation.pk,
            client_msg_id=message.client_msg_id,
            body=body,
        )
    except errors.NotFound:
        raise Conflict("not_assigned", "That agent does not have this conversation.") from None
    except errors.ConversationClosed:
        raise Conflict("conversation_closed", "The conversation is closed.") from None
    except errors.ClientMsgIdTaken:
        raise Conflict("client_msg_id_taken", "The visitor used that client_msg_id.") from None
    return (201 if posted.created else 200), posted.message


# --- visitors, agents, the site -------------------------------------------------


def _visitor(key: ApiKey, visitor_id: int) -> Visitor:
    visitor = Visitor.objects.filter(pk=visitor_id, site_id=key.site_id).first()
    if visitor is None:
        raise errors.NotFound
    return visitor


@api.get("/visitors/{visitor_id}", response={200: VisitorOut, **CONVERSATION_ERRORS})
def get_visitor(request, visitor_id: RowId):
    return visitor_record(_visitor(request.auth, visitor_id))


@api.patch("/visitors/{visitor_id}", response={200: VisitorOut, **CONVERSATION_ERRORS})
def update_visitor(request, visitor_id: RowId, changes: VisitorIn):
    """Set the visitor's name, email or custom attributes (what a CRM knows of them);
    the agent of their active chat sees the change."""
    visitor = _visitor(request.auth, visitor_id)
    try:
        sessions.update_visitor(
            visitor_id=visitor.pk,
            name=changes.name,
            email=changes.email,
            attributes=changes.attributes,
        )
    except errors.TooManyAttributes:
        raise HttpError(
            400, f"A visitor holds at most {Visitor.MAX_ATTRIBUTES} attributes."
        ) from None
    return visitor_record(_visitor(request.auth, visitor_id))


@api.get("/agents", response={200: list[AgentOut], 401: Error, 429: Error})
def list_agents(request):
    """The agents who serve the site, with whether they can take a chat now and their load."""
    return site_agents(request.auth.site_id)


@api.get("/site", response={200: SiteOut, 401: Error, 429: Error})
def get_site(request):
    site = request.auth.site
    return {
        "id": site.pk,
        "name": site.name,
        "key": site.key,
        "enabled": site.enabled,
        "allowed_origins": site.allowed_origins,
    }
