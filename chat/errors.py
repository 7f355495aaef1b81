"""What the chat core refuses: domain exceptions, raised by services and selectors.

They say what went wrong in the support domain, never how the wire spells it: the one
place that turns them into error codes is chat/protocol/errors.py (sockets), and each
HTTP view answers them with its own status.
"""


class NotFound(Exception):
    """The thing does not exist or is not yours: the caller cannot tell which."""


class SiteDisabled(Exception):
    """The site exists but is switched off."""


class AttachmentNotFound(NotFound):
    """A message named an attachment that is not the sender's unsent upload in this
    conversation (someone else's, already sent, deleted, or never existed)."""


class ConversationClosed(Exception):
    """The caller's own conversation is closed."""


class SeqOutOfRange(Exception):
    """A `read` past the conversation's last seq."""


class ClientMsgIdTaken(Exception):
    """The client_msg_id is already used in this conversation by the other side."""


class AgentUnavailable(Exception):
    """A transfer's target agent cannot take the chat now (away, offline, full, not
    serving the site, or the transferring agent itself)."""


class PickingNotAllowed(Exception):
    """The site does not let agents take chats from the queue themselves."""


class AlreadyRated(Exception):
    """The visitor already rated this conversation (one rating each)."""


class TooManyAttributes(Exception):
    """A visitor may hold at most Visitor.MAX_ATTRIBUTES custom attributes."""


class CallNotFound(NotFound):
    """A call frame named a call that is not the caller's to act on: someone else's, one
    already answered or ended, one whose conversation is closed, or none at all (the
    same answer for each, so call ids cannot be probed)."""


class CallInProgress(Exception):
    """An invitation into a conversation that already has a call ringing or going on."""


class NotWithBot(Exception):
    """The bot may no longer answer in this conversation: it was handed off to a person
    or closed meanwhile."""
