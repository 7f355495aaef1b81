"""The one place that turns what the domain refuses into the wire's error frames.

Services and selectors raise domain exceptions (chat/errors.py, agents/errors.py); a
socket answers each with the `error` frame below. An exception not listed here is not
a refusal but a fault: the socket fails with it (1011), as daphne does.
"""

import logging

from django.db import DatabaseError, InterfaceError
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from agents import errors as agent_errors

from .. import errors
from . import (
    AGENT_UNAVAILABLE,
    ALREADY_RATED,
    BAD_FRAME,
    BAD_SHORTCUT,
    CALL_IN_PROGRESS,
    CONVERSATION_CLOSED,
    DUPLICATE_SHORTCUT,
    FORBIDDEN,
    NOT_FOUND,
    TOO_LONG,
    TOO_MANY,
    UNAVAILABLE,
    ProtocolError,
)

logger = logging.getLogger(__name__)

# Refusals whose answer names the message the client sent (its client_msg_id), so that
# a widget can mark that message as not sent. Most specific class first.
# (exception classes, wire code, detail): the detail is read in the socket's language.
Kinds = type[Exception] | tuple[type[Exception], ...]
_ABOUT_A_MESSAGE: list[tuple[Kinds, str, str | Promise]] = [
    (errors.AttachmentNotFound, NOT_FOUND, _("No such attachment.")),
    # Not translated: the widget and the dashboard know this refusal by its detail (a
    # call that ended meanwhile; `not_found` alone could be the conversation) and show
    # their own words for it, never the detail.
    (errors.CallNotFound, NOT_FOUND, "No such call."),
    (errors.NotFound, NOT_FOUND, _("No such conversation.")),
    (errors.ConversationClosed, CONVERSATION_CLOSED, _("The conversation is closed.")),
    (
        errors.ClientMsgIdTaken,
        BAD_FRAME,
        _("client_msg_id is already used in this conversation."),
    ),
    (
        (DatabaseError, InterfaceError),
        UNAVAILABLE,
        _("The server cannot store this right now; retry with the same client_msg_id."),
    ),
]

_OTHERS: list[tuple[type[Exception], str, str | Promise]] = [
    (errors.CallInProgress, CALL_IN_PROGRESS, _("This conversation already has a call.")),
    (errors.AlreadyRated, ALREADY_RATED, _("This conversation was already rated.")),
    (errors.AgentUnavailable, AGENT_UNAVAILABLE, _("That agent cannot take this chat right now.")),
    (
        errors.PickingNotAllowed,
        FORBIDDEN,
        _("This site does not let agents take chats from the queue."),
    ),
    (errors.SeqOutOfRange, BAD_FRAME, _("seq is past the conversation's last message.")),
]

# Canned responses: the exception carries the agent's sentence, the class the code.
_CANNED: list[tuple[type[agent_errors.CannedResponseRefused], str]] = [
    (agent_errors.BadShortcut, BAD_SHORTCUT),
    (agent_errors.EmptyBody, BAD_FRAME),
    (agent_errors.BodyTooLong, TOO_LONG),
    (agent_errors.DuplicateShortcut, DUPLICATE_SHORTCUT),
    (agent_errors.TooManyCannedResponses, TOO_MANY),
    (agent_errors.CannedResponseNotFound, NOT_FOUND),
    (agent_errors.SharedResponsesForbidden, FORBIDDEN),
]


def refusal(exc: Exception, client_msg_id: str | None = None) -> ProtocolError | None:
    """The wire's answer to a domain refusal, or None when `exc` is not one."""
    for kind, code, detail in _ABOUT_A_MESSAGE:
        if isinstance(exc, kind):
            if code == UNAVAILABLE:
                logger.error("database unavailable: %s", exc)
            return ProtocolError(code, detail, client_msg_id=client_msg_id)
    for kind, code, detail in _OTHERS:
        if isinstance(exc, kind):
            return ProtocolError(code, detail)
    for kind, code in _CANNED:
        if isinstance(exc, kind):
            return ProtocolError(code, exc.detail)
    return None
