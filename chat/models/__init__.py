"""Sites, visitors, conversations and their messages: the record every socket recovers
from. One module per subject; every model is named here, as `chat.models.X`."""

from .attachments import Attachment, attachment_upload_to
from .audit import AuditLogEntry
from .calls import Call
from .conversations import (
    Assignment,
    Conversation,
    ConversationRating,
    Message,
    Note,
    SenderKind,
)
from .events import DurableEvent, EventInterest
from .sites import (
    Site,
    SiteText,
    SocketWorker,
    Visitor,
    VisitorSocket,
    hash_token,
    new_site_key,
    new_visitor_token,
)

__all__ = [
    "Assignment",
    "Attachment",
    "AuditLogEntry",
    "Call",
    "Conversation",
    "ConversationRating",
    "DurableEvent",
    "EventInterest",
    "Message",
    "Note",
    "SenderKind",
    "Site",
    "SiteText",
    "SocketWorker",
    "Visitor",
    "VisitorSocket",
    "attachment_upload_to",
    "hash_token",
    "new_site_key",
    "new_visitor_token",
]
