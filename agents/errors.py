"""What agents' own services refuse (canned responses), as domain exceptions.

Each carries a sentence for the agent (lazy: read in the agent's language by the socket
that answers); chat/protocol/errors.py maps the class to the wire's error code.
"""

from django.utils.functional import Promise


class CannedResponseRefused(Exception):
    """A canned-response request refused; `detail` says why, for the agent."""

    def __init__(self, detail: str | Promise):
        super().__init__(detail)
        self.detail = detail


class BadShortcut(CannedResponseRefused):
    """The shortcut is outside the model's pattern or length."""


class EmptyBody(CannedResponseRefused):
    """The body is empty once trimmed."""


class BodyTooLong(CannedResponseRefused):
    """The body is longer than a message may be."""


class DuplicateShortcut(CannedResponseRefused):
    """The owner (the agent, or the desk for shared ones) already has that shortcut."""


class TooManyCannedResponses(CannedResponseRefused):
    """The agent is at the cap of own snippets."""


class CannedResponseNotFound(CannedResponseRefused):
    """Another agent's snippet, or none: the same answer, so ids cannot be probed."""


class SharedResponsesForbidden(CannedResponseRefused):
    """Only supervisors (and admins, in the admin) change the desk's shared snippets."""
