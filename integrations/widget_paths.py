"""The widget's own `/api/v1/` endpoints (chat/views.py, chat/attachment_views.py) in the
OpenAPI document beside the keyed API, so the document names every `/api/v1/` endpoint.

They are served by the core, not by django-ninja: a visitor's browser calls them from
the site's page (the Origin must be one of the site's), with no API key. Their request
and response shapes below are pydantic models, turned into JSON Schema like the rest of
the document; tests/test_api_schema.py runs them against the live server too.
"""

from typing import Literal

from pydantic import BaseModel, Field

from chat.protocol import MAX_BODY_CHARS
from chat.views import MAX_OFFLINE_BODY, MAX_SESSION_BODY

# As the views check: no NUL in any text; the form's fields not blank.
NO_NUL = r"^[^\x00]*$"
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"


class VisitorSessionIn(BaseModel):
    site_key: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    visitor_token: str | None = Field(
        None, max_length=128, pattern=NO_NUL, description="Resume this visitor."
    )
    rotate: bool = Field(False, description="Issue a new token for the same visitor.")
    # The shipped languages (settings.LANGUAGES; docs/languages.md lists this place).
    language: Literal["en", "de", "fr", "es", "pt", "ar"] | None = Field(
        None, description="The widget's language: the visitor's transcript email is in it."
    )


class VisitorSessionOut(BaseModel):
    visitor_token: str
    ws_url: Literal["/ws/visitor/"]


class OfflineMessageIn(BaseModel):
    site_key: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    visitor_token: str | None = Field(None, max_length=128, pattern=NO_NUL)
    name: str = Field(min_length=1, max_length=200, pattern=NOT_BLANK)
    email: str = Field(max_length=254, json_schema_extra={"format": "email"})
    question: str = Field(min_length=1, max_length=MAX_BODY_CHARS, pattern=NOT_BLANK)


class OfflineMessageOut(BaseModel):
    visitor_token: str
    conversation: int
    seq: int


class AttachmentOut(BaseModel):
    id: int
    name: str
    size: int
    content_type: str
    url: str
    thumbnail_url: str | None


class WidgetError(BaseModel):
    error: str
    detail: str


def _json(model: type[BaseModel]) -> dict:
    return {"application/json": {"schema": model.model_json_schema()}}


def _answers(success: int, model: type[BaseModel], refusals: dict[int, str]) -> dict:
    answers = {str(success): {"description": "Done.", "content": _json(model)}}
    for status, meaning in refusals.items():
        answers[str(status)] = {"description": meaning, "content": _json(WidgetError)}
    return answers


COMMON_REFUSALS = {
    400: "The body is not valid (error bad_request).",
    403: "The Origin is not one of the site's (forbidden).",
    404: "No such site, or it is disabled (not_found).",
    413: "The body is too large (too_long).",
    429: "Too many from this address; Retry-After says when to try again.",
    503: "The database is unavailable; retry shortly.",
}


def paths(prefix: str) -> dict:
    """The path items of the widget's endpoints, under `prefix` (e.g. /api/v1/)."""
    tag = ["widget"]
    return {
        f"{prefix}visitor-sessions": {
            "post": {
                "operationId": "widget_visitor_sessions",
                "summary": "A visitor's token (new, resumed or rotated)",
                "description": "Called by the widget from the site's page (Origin checked). "
                f"Bodies over {MAX_SESSION_BODY} bytes: 413.",
                "tags": tag,
                "security": [],
                "requestBody": {"required": True, "content": _json(VisitorSessionIn)},
                "responses": _answers(201, VisitorSessionOut, COMMON_REFUSALS),
            }
        },
        f"{prefix}offline-messages": {
            "post": {
                "operationId": "widget_offline_messages",
                "summary": "The widget's offline form: a queued conversation, mailed to agents",
                "description": "Called by the widget from the site's page (Origin checked). "
                f"Bodies over {MAX_OFFLINE_BODY} bytes: 413.",
                "tags": tag,
                "security": [],
                "requestBody": {"required": True, "content": _json(OfflineMessageIn)},
                "responses": _answers(201, OfflineMessageOut, COMMON_REFUSALS),
            }
        },
        f"{prefix}attachments": {
            "post": {
                "operationId": "widget_attachments",
                "summary": "Upload one file into the caller's open conversation",
                "description": "A visitor sends `Authorization: Bearer VISITOR_TOKEN` from "
                "the site's page; an agent's dashboard sends its session cookie, CSRF token "
                "and a `conversation` field. The file waits for a `message.send` naming it.",
                "tags": tag,
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "file": {"type": "string", "format": "binary"},
                                    "conversation": {"type": "integer"},
                                },
                                "required": ["file"],
                            }
                        }
                    },
                },
                "responses": _answers(
                    201,
                    AttachmentOut,
                    {
                        **COMMON_REFUSALS,
                        400: "Not a valid upload, or a file type not accepted.",
                        401: "Unknown visitor token.",
                        403: "Not the site's Origin, or neither a visitor nor an agent.",
                        409: "No open conversation to put it in.",
                        413: "The file is too large (too_large).",
                        415: "A kind of file that cannot be attached (unsupported_type).",
                    },
                ),
            }
        },
    }
